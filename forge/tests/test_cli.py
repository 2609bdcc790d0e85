"""The anvil-forge commands of the foundation: demo, createuser and publish (run in-process)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from anvil_forge import cli
from anvil_forge.accounts.models import Membership, Organisation
from anvil_forge.audit.models import AuditEvent
from anvil_forge.distribution.models import Release
from anvil_forge.prompts import demo
from anvil_forge.prompts.analysis import prompt_analysis, prompt_preview
from anvil_forge.prompts.models import Environment, PromptSet, PromptSetVersion

pytestmark = pytest.mark.django_db

SAMPLES = {
    "company": "Acme",
    "customer_name": "Ada",
    "plan": "pro",
    "ticket_id": "4711",
    "priority": "urgent",
    "order_id": "A-1",
    "shipped": True,
    "items": [{"name": "Anvil", "quantity": 2}],
    "tracking_url": "https://track.example/A-1",
    "days_since_purchase": 45,
    "agent_name": "Grace",
    "queue_position": 3,
    "thing": "order A-2",
}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_seeds_v1_live_in_production_and_v2_approved_and_prints_logins(capsys):
    code, out, _ = run(capsys, "demo")

    assert code == 0
    prompt_set = PromptSet.objects.get(project__organisation__slug="acme", project__slug="support-bot", slug="core")
    assert prompt_set.status == "LOCKED"
    assert list(prompt_set.versions.order_by("number").values_list("number", "state")) == [
        (1, "approved"),
        (2, "approved"),
    ]
    releases = Release.objects.filter(prompt_set=prompt_set)
    assert [(r.environment.slug, r.version.number) for r in releases] == [("production", 1)]
    staging = Environment.objects.get(project=prompt_set.project, slug="staging")
    assert staging.accepts_review_versions
    assert 5 <= prompt_set.prompts.count() <= 7
    users = get_user_model().objects
    for role in ("owner", "admin", "editor", "reviewer", "viewer"):
        assert users.get(username=role).check_password("anvil-demo")
        assert Membership.objects.get(user__username=role, organisation__slug="acme").role == role
        assert f"  {role}" in out
    assert "anvil-demo" in out
    assert "anvil-forge publish acme/support-bot/core --version 2 --environment production --as editor" in out


def test_demo_twice_changes_nothing_and_keeps_passwords(capsys):
    run(capsys, "demo", "--password", "first-password")
    events = AuditEvent.objects.count()

    code, out, _ = run(capsys, "demo", "--password", "other-password")

    assert code == 0
    assert "already in place" in out
    assert AuditEvent.objects.count() == events
    assert PromptSetVersion.objects.count() == 2
    assert Organisation.objects.filter(slug="acme").count() == 1
    assert get_user_model().objects.get(username="editor").check_password("first-password")


def test_demo_prompts_are_clean_and_render_with_realistic_values(capsys):
    run(capsys, "demo")
    version = PromptSetVersion.objects.get(number=2)
    for prompt in version.snapshot["prompts"]:
        analysis = prompt_analysis(prompt["template"], prompt["parameters"])
        assert analysis.ok and not analysis.undeclared and not analysis.unused, prompt["id"]
        names = {p["name"] for p in prompt["parameters"]}
        values = {k: v for k, v in SAMPLES.items() if k in names}
        rendered = prompt_preview(prompt["template"], prompt["parameters"], values)
        assert rendered.strip(), prompt["id"]
    assert {p["id"] for p in version.snapshot["prompts"]} >= set(demo.CHANGES_V2)


def test_publish_publishes_as_the_named_user_and_audits_it(capsys):
    run(capsys, "demo")

    code, out, err = run(
        capsys, "publish", "acme/support-bot/core", "--version", "2", "--environment", "production", "--as", "editor"
    )

    assert (code, err) == (0, "")
    assert "Published acme/support-bot/core version 2 to production" in out
    release = Release.objects.order_by("-id").first()
    assert (release.version.number, release.published_by.username) == (2, "editor")
    assert AuditEvent.objects.filter(action="release.publish", actor_label="editor").count() == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["acme/support-bot/core", "--version", "2", "--environment", "production", "--as", "viewer"], "viewer"),
        (["acme/support-bot/core", "--version", "1", "--environment", "production", "--as", "editor"], "already live"),
        (["acme/support-bot/core", "--version", "9", "--environment", "production", "--as", "editor"], "no version 9"),
        (["acme/support-bot/core", "--version", "2", "--environment", "moon", "--as", "editor"], "no environment moon"),
        (["acme/support-bot", "--version", "2", "--environment", "production", "--as", "editor"], "ORG/PROJECT/SET"),
        (["acme/support-bot/core", "--version", "2", "--environment", "production", "--as", "nobody"], "no active"),
        (["acme/other/core", "--version", "2", "--environment", "production", "--as", "editor"], "No project"),
    ],
)
def test_publish_refusals_are_one_clear_line_and_exit_1(capsys, argv, message):
    run(capsys, "demo")
    releases = Release.objects.count()

    code, _, err = run(capsys, "publish", *argv)

    assert code == 1
    assert err.startswith("anvil-forge: ") and message in err and err.count("\n") == 1
    assert Release.objects.count() == releases


def test_publish_by_a_member_of_another_organisation_is_not_found(capsys):
    run(capsys, "demo")
    run(capsys, "createuser", "mallory", "--password", "a long enough passphrase", "--org", "evil", "--role", "owner")

    code, _, err = run(
        capsys, "publish", "acme/support-bot/core", "--version", "2", "--environment", "production", "--as", "mallory"
    )

    assert code == 1 and "No project acme/support-bot was found" in err


def test_createuser_with_a_new_org_as_owner_creates_both(capsys):
    code, out, _ = run(
        capsys, "createuser", "ada", "--password", "a long enough passphrase", "--org", "newco", "--role", "owner"
    )

    assert code == 0 and "ada is now owner of newco" in out
    user = get_user_model().objects.get(username="ada")
    assert user.check_password("a long enough passphrase")
    assert Membership.objects.get(user=user).organisation.slug == "newco"


def test_createuser_adds_an_existing_user_to_an_organisation(capsys):
    run(capsys, "createuser", "ada", "--password", "a long enough passphrase", "--org", "newco", "--role", "owner")
    run(capsys, "createuser", "bob", "--password", "another long passphrase")

    code, out, _ = run(capsys, "createuser", "bob", "--org", "newco", "--role", "reviewer")

    assert code == 0 and "bob is now reviewer of newco" in out
    assert get_user_model().objects.get(username="bob").check_password("another long passphrase")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ada", "--password", "short"], "too short"),
        (["ada", "--password", "a long enough passphrase", "--org", "nowhere", "--role", "editor"], "no organisation"),
        (["ada", "--password", "a long enough passphrase", "--org", "newco"], "--org and --role together"),
        (["taken", "--password", "a long enough passphrase"], "already exists"),
        (["ada"], "no --password given"),
    ],
)
def test_createuser_refusals(capsys, argv, message):
    run(capsys, "createuser", "taken", "--password", "a long enough passphrase")

    code, _, err = run(capsys, "createuser", *argv)

    assert code == 1 and message in err
    assert not get_user_model().objects.filter(username="ada").exists()
    assert not Organisation.objects.filter(slug="nowhere").exists()

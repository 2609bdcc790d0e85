"""The management API end to end through the Django test client: reads, edits with the editor's stale-revision
rule, the review workflow with four eyes, publish, rollback, releases, instances, the audit trail, and isolation
between organisations (checked in the bodies, not only the statuses)."""

from __future__ import annotations

import pytest

from anvil_forge.audit.models import AuditEvent
from anvil_forge.prompts import services
from anvil_forge.prompts.models import Prompt, PromptSet
from forge.tests import factories
from forge.tests.security.test_access_matrix import leaked, leaked_in, victim_names

pytestmark = pytest.mark.django_db


@pytest.fixture
def base(team, prompt_set):
    return f"organisations/{team.organisation.slug}/projects/{prompt_set.project.slug}/"


def test_reads_list_projects_environments_sets_and_prompts(team, prompt_set, base, key_for):
    client = key_for(team.viewer)

    assert client.get(f"organisations/{team.organisation.slug}").json()["role"] == "viewer"
    assert [p["slug"] for p in client.get(f"organisations/{team.organisation.slug}/projects").json()["items"]] == [
        prompt_set.project.slug
    ]
    assert [e["slug"] for e in client.get(base + "environments").json()["items"]] == ["production", "staging"]
    detail = client.get(base + f"sets/{prompt_set.slug}").json()
    assert detail["status"] == "LIVE" and detail["prompts"] == ["errors.not_found", "welcome.message"]
    page = client.get(base + f"sets/{prompt_set.slug}/prompts", per_page=1).json()
    assert page["total"] == 2 and page["next_page"] == 2 and page["items"][0]["id"] == "errors.not_found"
    assert client.get(base + "sets/nope").status_code == 404
    assert client.get(base + "sets", per_page=0).status_code == 400


def test_prompt_update_follows_the_editors_stale_revision_rule(team, prompt_set, base, key_for):
    client = key_for(team.editor)
    path = base + f"sets/{prompt_set.slug}/prompts/welcome.message"
    revision = client.get(path).json()["revision"]

    saved = client.patch(path, {"base_revision": revision, "template": "Hi {{ name }}"})
    stale = client.patch(path, {"base_revision": revision, "template": "Hello again {{ name }}"})
    missing = client.patch(path, {"template": "x"})

    assert saved.status_code == 200 and saved.json()["revision"] == revision + 1
    assert stale.status_code == 409 and "changed by" in stale.json()["error"]
    assert stale.json()["details"]["revision"] == revision + 1
    assert missing.status_code == 400
    assert Prompt.objects.get(prompt_set=prompt_set, key="welcome.message").template == "Hi {{ name }}"
    event = AuditEvent.objects.filter(action="prompt.update").first()
    assert event.actor_label == team.editor.get_username()


def test_create_submit_review_with_four_eyes_publish_and_rollback(team, project, base, key_for):
    editor, reviewer = key_for(team.editor), key_for(team.reviewer)
    assert editor.post(base + "sets", {"slug": "api-set", "name": "API"}).status_code == 201
    s = base + "sets/api-set/"
    made = editor.post(s + "prompts", {"id": "hello.world", "template": "Hello {{ who }}", "parameters": [
        {"name": "who", "type": "string", "required": True}]})
    assert made.status_code == 201, made.json()
    assert editor.post(s + "prompts", {"id": "hello.world", "template": "again"}).status_code == 409

    v1 = editor.post(s + "submit")
    assert v1.status_code == 201 and v1.json()["number"] == 1
    own = editor.post(s + "versions/1/approve")
    assert own.status_code == 403 or own.status_code == 400  # the editor has no review capability at all
    owner = key_for(team.owner)
    # the owner may review, but not what they submitted: four eyes
    owner.post(s + "versions/1/request-changes", {"comment": "more"})
    assert owner.post(s + "submit").status_code == 201
    four_eyes = owner.post(s + "versions/2/approve")
    assert four_eyes.status_code == 400 and "four eyes" in four_eyes.json()["error"]

    approved = reviewer.post(s + "versions/2/approve", {"comment": "fine"})
    assert approved.status_code == 200 and approved.json()["state"] == "approved"
    assert reviewer.post(s + "versions/2/publish", {"environment": "production"}).status_code == 403
    published = editor.post(s + "versions/2/publish", {"environment": "production"})
    assert published.status_code == 201 and published.json()["version"] == 2
    again = editor.post(s + "versions/2/publish", {"environment": "production"})
    assert again.status_code == 409

    # version 3, then roll production back to 2
    assert owner.post(s + "submit").status_code == 409  # LOCKED: refused
    prompt_set = PromptSet.objects.get(slug="api-set")
    services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    factories.edit_prompt(prompt_set, "hello.world", "Hi {{ who }}", actor=team.editor)
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    editor.post(s + "versions/3/publish", {"environment": "production"})
    rolled = editor.post(s + "rollback", {"version": 2, "environment": "production"})
    assert rolled.status_code == 201 and rolled.json()["version"] == 4
    assert editor.get(s + "versions/4").json()["rollback_of"] == 2

    releases = editor.get(base + "releases", set="api-set", environment="production").json()
    assert [r["version"] for r in releases["items"]] == [4, 3, 2]
    one = editor.get(base + f"releases/{releases['items'][0]['id']}").json()
    assert one["acknowledgements"] == [] and one["published_by"] == team.editor.get_username()

    audit = editor.get(f"organisations/{team.organisation.slug}/audit", action="release.", per_page=2).json()
    assert audit["total"] == 3 and audit["next_page"] == 2
    assert {e["actor"] for e in audit["items"]} == {team.editor.get_username()}
    by_reviewer = editor.get(f"organisations/{team.organisation.slug}/audit", actor=team.reviewer.get_username())
    assert {e["action"] for e in by_reviewer.json()["items"]} == {"version.approve"}
    assert editor.get(f"organisations/{team.organisation.slug}/audit", since="yesterday").status_code == 400


def test_instances_are_listed(team, project, key_for):
    response = key_for(team.viewer).get(f"organisations/{team.organisation.slug}/instances", project=project.slug)

    assert response.status_code == 200 and response.json()["items"] == []


def test_pull_push_dry_run_submit_and_check(team, prompt_set, base, key_for):
    editor = key_for(team.editor)
    s = base + f"sets/{prompt_set.slug}/"
    pulled = editor.get(s + "files").json()
    assert sorted(pulled["files"]) == ["errors.not_found.j2", "set.yaml", "welcome.message.j2"]

    files = dict(pulled["files"])
    files["errors.not_found.j2"] = files["errors.not_found.j2"].replace("Sorry", "So sorry")
    files["farewell.j2"] = "Bye.\n"
    del files["welcome.message.j2"]
    dry = editor.post(s + "files", {"files": files, "dry_run": True}).json()
    assert (dry["added"], dry["changed"], dry["removed"]) == (["farewell"], ["errors.not_found"], ["welcome.message"])
    assert Prompt.objects.filter(prompt_set=prompt_set).count() == 2

    pushed = editor.post(s + "files", {"files": files, "submit": True}).json()
    assert pushed["submitted"]["number"] == 1 and pushed["status"] == "REVIEW"
    assert sorted(Prompt.objects.filter(prompt_set=prompt_set).values_list("key", flat=True)) == [
        "errors.not_found", "farewell"]
    same = editor.post(s + "files", {"files": files, "submit": True}).json()
    assert same["changes"] is False and same["submitted"] is None
    in_review = editor.post(s + "files", {"files": {**files, "farewell.j2": "Bye now.\n"}})
    assert in_review.status_code == 409

    broken = editor.post(s + "check", {"files": {"a.b.j2": "{% if %}\n"}})
    assert broken.status_code == 400 and "a.b.j2" in broken.json()["error"]
    tested = editor.post(s + "check", {"files": {"a.b.j2": (
        "---\nparameters:\n  who: string\ntests:\n  greets:\n    values:\n      who: Ada\n    checks:\n"
        "    - contains: Ada\n  fails:\n    values:\n      who: Bob\n    checks:\n    - contains: Ada\n"
        "---\nHi {{ who }}\n"
    )}}).json()
    assert (tested["passed"], tested["failed"], tested["failing"]) == (1, 1, ["a.b: fails"])
    assert editor.get(s + "files", version=1).json()["version"] == 1
    assert editor.get(s + "files", environment="production").status_code == 404


def test_a_key_of_one_organisation_sees_nothing_of_another(team, other_team, prompt_set, key_for):
    victim = factories.make_project(other_team.organisation, actor=other_team.owner, slug="victim-project")
    hidden = factories.make_prompt_set_with_prompts(victim, actor=other_team.editor, slug="victim-set")
    version = factories.make_approved_version(hidden, author=other_team.editor, reviewer=other_team.reviewer)
    release = factories.make_release(version, actor=other_team.editor)
    # Names both organisations use (production, welcome.message) tell nothing; the rest must never show.
    names = sorted(set(victim_names(other_team.organisation.slug)) - set(victim_names(team.organisation.slug)))
    assert {"victim-project", "victim-set", other_team.organisation.slug} <= set(names)
    stranger = key_for(team.owner)
    org, v = other_team.organisation.slug, "victim-project"
    paths = [
        "organisations", f"organisations/{org}", f"organisations/{org}/projects", f"organisations/{org}/audit",
        f"organisations/{org}/instances", f"organisations/{org}/projects/{v}",
        f"organisations/{org}/projects/{v}/environments", f"organisations/{org}/projects/{v}/sets",
        f"organisations/{org}/projects/{v}/sets/victim-set", f"organisations/{org}/projects/{v}/releases",
        f"organisations/{org}/projects/{v}/releases/{release.pk}",
        f"organisations/{org}/projects/{v}/sets/victim-set/files",
        f"organisations/{org}/projects/{v}/sets/victim-set/versions/1",
        f"organisations/{team.organisation.slug}/audit",
        f"organisations/{team.organisation.slug}/projects/{prompt_set.project.slug}/releases/{release.pk}",
    ]
    before = AuditEvent.objects.count()
    for path in paths:
        response = stranger.get(path)
        typed = [n for n in names if not leaked_in(path, [n])]
        assert response.status_code in (200, 404), path
        assert leaked(response, typed) == [], path
    writes = [
        stranger.post(f"organisations/{org}/projects/{v}/sets/victim-set/versions/1/publish",
                      {"environment": "staging"}),
        stranger.post(f"organisations/{org}/projects/{v}/sets/victim-set/files", {"files": {"x.j2": "x\n"}}),
        stranger.post(f"organisations/{org}/projects/{v}/sets", {"slug": "mine"}),
    ]
    assert [w.status_code for w in writes] == [404, 404, 404]
    # Nothing changed; the stranger's reads are recorded (api_key.read), never in the other organisation's log.
    assert AuditEvent.objects.exclude(action="api_key.read").count() == before
    assert not AuditEvent.objects.filter(organisation=other_team.organisation, created_at__gte=release.published_at,
                                         action="api_key.read").exists()

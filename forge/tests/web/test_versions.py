"""Versions, diff, publish confirmation, acknowledgements and rollback."""

from __future__ import annotations

import pytest

from anvil_forge.distribution import services as distribution
from anvil_forge.distribution.checkin import CheckIn
from anvil_forge.prompts.models import PromptSetVersion
from anvil_forge.web.diffing import snapshot_diff, template_lines
from forge.tests import factories

pytestmark = pytest.mark.django_db


def _checkin(token, instance_id, *, versions, mode="ACCEPTING", pins=None, usage=None):
    return distribution.instance_checkin(
        token=token,
        checkin=CheckIn(
            instance_id=instance_id,
            name=instance_id,
            host="web-host",
            process_count=1,
            client_version="0.1.0",
            mode=mode,
            pins=pins or {},
            versions=versions,
            usage=usage or {},
        ),
    )


@pytest.fixture
def two_versions(team, prompt_set):
    v1 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v1, actor=team.editor)
    prompt_set.refresh_from_db()
    from anvil_forge.prompts import services

    services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    factories.edit_prompt(prompt_set, "welcome.message", "Hello {{ name }}!\nSecond line.", actor=team.editor)
    v2 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    return v1, v2


def test_template_lines_pairs_changed_lines_and_folds_long_equal_runs():
    old = "\n".join(f"line {i}" for i in range(20))
    new = old.replace("line 10", "line ten")
    rows = template_lines(old, new)
    assert [(r.old_text, r.new_text) for r in rows if r.kind == "replace"] == [("line 10", "line ten")]
    assert any(r.kind == "gap" for r in rows)


def test_snapshot_diff_lists_added_removed_changed_and_parameter_changes():
    old = {
        "prompts": [
            {"id": "a", "template": "A", "parameters": [{"name": "x", "type": "string", "required": True}]},
            {"id": "gone", "template": "G", "parameters": []},
        ]
    }
    new = {
        "prompts": [
            {"id": "a", "template": "A2", "parameters": [{"name": "x", "type": "number", "required": True}]},
            {"id": "fresh", "template": "F", "parameters": []},
        ]
    }
    diff = snapshot_diff(old, new)
    assert [c.id for c in diff.added] == ["fresh"] and [c.id for c in diff.removed] == ["gone"]
    assert diff.changed[0].parameters == ['x: type: "string" → "number"']


def test_versions_page_shows_author_approver_digest_and_where_live(as_user, team, urls, two_versions):
    v1, v2 = two_versions
    body = as_user(team.viewer).get(urls["versions"]).content.decode()
    assert v1.digest[:19] in body and v2.digest[:19] in body
    assert team.reviewer.get_username() in body and team.editor.get_username() in body
    assert '<span class="badge badge-ok">production</span>' in body


def test_diff_page_shows_line_level_changes(as_user, team, urls, two_versions):
    body = as_user(team.viewer).get(urls["base"] + "diff/?a=1&b=2").content.decode()
    assert "welcome.message" in body and "Second line." in body and 'class="add"' in body


def test_publish_confirmation_counts_takers_refusers_and_warns(as_user, team, project, urls, two_versions):
    production = factories.environment(project)
    token, _ = distribution.token_create(
        actor=team.owner, project=project, environment=production, kind="live", name="t"
    )
    _checkin(token, "web-1", versions={two_versions[0].prompt_set.slug: 1}, usage={"old.prompt": []})
    _checkin(token, "web-2", versions={two_versions[0].prompt_set.slug: 1}, mode="FROZEN")
    _checkin(token, "web-3", versions={two_versions[0].prompt_set.slug: 1}, pins={two_versions[0].prompt_set.slug: 1})
    body = as_user(team.editor).get(urls["base"] + "versions/2/publish/production/").content.decode()
    assert 'data-testid="takers">1<' in body
    assert "FROZEN" in body and "pinned to v1" in body
    assert "old.prompt" in body  # the usage warning
    assert "Second line." in body  # the diff against what is live


def test_publishing_redirects_to_the_release_whose_acknowledgements_update(as_user, team, project, urls, two_versions):
    production = factories.environment(project)
    token, _ = distribution.token_create(
        actor=team.owner, project=project, environment=production, kind="live", name="t"
    )
    slug = two_versions[0].prompt_set.slug
    _checkin(token, "web-1", versions={slug: 1})
    response = as_user(team.editor).post(urls["base"] + "versions/2/publish/production/")
    assert response.status_code == 302 and "/releases/" in response["Location"]
    acks_url = response["Location"] + "acks/"
    client = as_user(team.viewer)
    assert "1 waiting" in client.get(acks_url).content.decode()
    _checkin(token, "web-1", versions={slug: 2})
    body = client.get(acks_url).content.decode()
    assert 'data-testid="ack-count">1 applied' in body and "applied v2" in body


def test_publishing_an_older_version_is_refused_with_the_reason(as_user, team, urls, two_versions):
    factories.make_release(two_versions[1], actor=team.editor)
    response = as_user(team.editor).post(urls["base"] + "versions/1/publish/production/")
    assert response.status_code == 409 and "Roll back instead" in response.content.decode()


def test_rollback_makes_a_new_approved_version(as_user, team, urls, two_versions, prompt_set):
    factories.make_release(two_versions[1], actor=team.editor)
    as_user(team.editor).post(urls["base"] + "versions/1/rollback/production/")
    v3 = PromptSetVersion.objects.get(prompt_set=prompt_set, number=3)
    assert v3.state == "approved" and v3.digest == two_versions[0].digest


def test_changed_words_are_marked_and_everything_is_escaped():
    from anvil_forge.web.diffing import word_marks

    old, new = word_marks("Hello <b>{{ name }}</b>", "Hi <b>{{ name }}</b>")
    assert old == '<mark class="del">Hello</mark> &lt;b&gt;{{ name }}&lt;/b&gt;'
    assert new == '<mark class="add">Hi</mark> &lt;b&gt;{{ name }}&lt;/b&gt;'


def test_versions_page_says_how_many_instances_run_each_version(as_user, team, project, urls, two_versions):
    production = factories.environment(project)
    token, _ = distribution.token_create(
        actor=team.owner, project=project, environment=production, kind="live", name="t"
    )
    slug = two_versions[0].prompt_set.slug
    _checkin(token, "web-1", versions={slug: 1})
    _checkin(token, "web-2", versions={slug: 1}, pins={slug: 1})
    body = as_user(team.viewer).get(urls["versions"]).content.decode()
    assert "runs on 2 instances in production" in body


def test_version_page_shows_the_snapshot(as_user, team, urls, two_versions):
    body = as_user(team.viewer).get(urls["base"] + "versions/2/").content.decode()
    assert "Second line." in body and two_versions[1].digest in body and "welcome.message" in body
    assert '<li aria-current="page">Version 2</li>' in body
    assert "<tr><td><code>name</code></td><td>string</td><td>yes</td>" in body  # the parameters table
    assert as_user(team.viewer).get(urls["base"] + "versions/9/").status_code == 404


def test_publish_confirmation_lists_offline_instances_apart(as_user, team, project, urls, two_versions):
    from datetime import timedelta

    from django.utils import timezone

    from anvil_forge.distribution.models import LiveProcess

    production = factories.environment(project)
    token, _ = distribution.token_create(
        actor=team.owner, project=project, environment=production, kind="live", name="t"
    )
    _checkin(token, "old-box", versions={two_versions[0].prompt_set.slug: 1})
    LiveProcess.objects.filter(instance__instance_id="old-box").update(expires_at=timezone.now() - timedelta(hours=2))
    body = as_user(team.editor).get(urls["base"] + "versions/2/publish/production/").content.decode()
    assert 'data-testid="takers">0<' in body and "Not seen lately" in body and "old-box" in body

"""The rollout pages (issue 16): start from the publish page, the rollout page and its live body, the actions."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from anvil_forge.audit.models import AuditEvent
from anvil_forge.distribution.rollout_models import Rollout, RolloutState
from forge.tests import factories


@pytest.fixture
def setup(team, project, prompt_set):
    v1 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v1, actor=team.editor)
    v2 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    return team, project, prompt_set, v2


def _browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _args(project, prompt_set):
    return [project.organisation.slug, project.slug, prompt_set.slug]


def test_an_editor_starts_a_rollout_from_the_publish_page_and_follows_it(setup):
    team, project, prompt_set, v2 = setup
    browser = _browser(team.editor)
    publish = browser.get(reverse("web:publish", args=[*_args(project, prompt_set), v2.number, "production"]))
    assert publish.status_code == 200 and b"roll out to a share of the instances" in publish.content
    start = reverse("web:rollout_start", args=[*_args(project, prompt_set), v2.number, "production"])
    response = browser.post(start, {"stages": "10:60,50:60", "threshold": "3", "min_renders": "20"})
    rollout = Rollout.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("web:rollout", args=[*_args(project, prompt_set), rollout.pk])
    assert rollout.stages[-1] == {"percent": 100, "bake_seconds": 0} and rollout.threshold == 3
    page = browser.get(response["Location"])
    assert page.status_code == 200
    for text in (b"Rollout of version 2", b'data-stage="3"', b'data-side="canary"', b'data-side="baseline"'):
        assert text in page.content
    body = browser.get(reverse("web:rollout_body", args=[*_args(project, prompt_set), rollout.pk]))
    assert body.status_code == 200 and b'data-rollout-state="running"' in body.content
    versions = browser.get(reverse("web:versions", args=_args(project, prompt_set)))
    assert b"Rollouts" in versions.content


@pytest.mark.parametrize("bad", ["25,5", "x", "150"])
def test_bad_stages_are_an_error_message_not_a_500(setup, bad):
    team, project, prompt_set, v2 = setup
    start = reverse("web:rollout_start", args=[*_args(project, prompt_set), v2.number, "production"])
    response = _browser(team.editor).post(start, {"stages": bad}, follow=True)
    assert response.status_code == 200 and not Rollout.objects.exists()


def test_pause_resume_promote_and_abort_by_hand_are_audited(setup):
    team, project, prompt_set, v2 = setup
    browser = _browser(team.editor)
    start = reverse("web:rollout_start", args=[*_args(project, prompt_set), v2.number, "production"])
    browser.post(start, {"stages": "10:60,50:60"})
    rollout = Rollout.objects.get()

    def act(action: str, **data: str) -> None:
        url = reverse("web:rollout_action", args=[*_args(project, prompt_set), rollout.pk, action])
        assert browser.post(url, data).status_code == 302

    act("pause", reason="lunch")
    assert Rollout.objects.get().state == RolloutState.PAUSED
    act("resume")
    act("promote")
    assert Rollout.objects.get().stage == 1
    act("abort", reason="saw a bad answer")
    rollout = Rollout.objects.get()
    assert rollout.state == RolloutState.ABORTED and rollout.reason == "saw a bad answer"
    assert rollout.halt_release is None  # nobody was on the canary: nothing to go back from
    actions = sorted(AuditEvent.objects.filter(action__startswith="rollout.").values_list("action", flat=True))
    assert actions == ["rollout.abort", "rollout.pause", "rollout.promote", "rollout.resume", "rollout.start"]
    page = browser.get(reverse("web:rollout", args=[*_args(project, prompt_set), rollout.pk]))
    assert b"saw a bad answer" in page.content


def test_a_viewer_sees_the_page_but_no_buttons_and_cannot_act(setup):
    team, project, prompt_set, v2 = setup
    start = reverse("web:rollout_start", args=[*_args(project, prompt_set), v2.number, "production"])
    _browser(team.editor).post(start, {"stages": "10:60"})
    rollout = Rollout.objects.get()
    viewer = _browser(team.viewer)
    page = viewer.get(reverse("web:rollout", args=[*_args(project, prompt_set), rollout.pk]))
    assert page.status_code == 200 and b"Abort and go back" not in page.content
    viewer.post(reverse("web:rollout_action", args=[*_args(project, prompt_set), rollout.pk, "abort"]))
    assert Rollout.objects.get().state == RolloutState.RUNNING


def test_another_organisation_cannot_see_the_rollout(setup, other_team):
    team, project, prompt_set, v2 = setup
    start = reverse("web:rollout_start", args=[*_args(project, prompt_set), v2.number, "production"])
    _browser(team.editor).post(start, {"stages": "10:60"})
    rollout = Rollout.objects.get()
    response = _browser(other_team.owner).get(reverse("web:rollout", args=[*_args(project, prompt_set), rollout.pk]))
    assert response.status_code == 404


def test_the_release_page_links_the_rollouts_that_started_from_it(setup):
    team, project, prompt_set, v2 = setup
    browser = _browser(team.editor)
    start = reverse("web:rollout_start", args=[*_args(project, prompt_set), v2.number, "production"])
    browser.post(start, {"stages": "10:60"})
    rollout = Rollout.objects.get()
    page = browser.get(reverse("web:release", args=[*_args(project, prompt_set), rollout.previous_release_id]))
    assert page.status_code == 200
    assert reverse("web:rollout", args=[*_args(project, prompt_set), rollout.pk]).encode() in page.content


def test_an_admin_sets_the_projects_rollout_defaults_and_new_rollouts_take_them(setup):
    team, project, prompt_set, v2 = setup
    admin = _browser(team.admin)
    settings_page = admin.get(reverse("web:project_settings", args=[project.organisation.slug, project.slug]))
    assert b"Save rollout defaults" in settings_page.content and b"5:600,25:600,100" in settings_page.content
    url = reverse("web:rollout_settings", args=[project.organisation.slug, project.slug])
    assert admin.post(url, {"stages": "20:30,60:30", "threshold": "1.5", "min_renders": "200"}).status_code == 302
    assert AuditEvent.objects.filter(action="project.rollout_settings").count() == 1
    editor = _browser(team.editor)
    publish = editor.get(reverse("web:publish", args=[*_args(project, prompt_set), v2.number, "production"]))
    assert b'value="20:30,60:30,100:0"' in publish.content
    start = reverse("web:rollout_start", args=[*_args(project, prompt_set), v2.number, "production"])
    editor.post(start, {})  # the form left empty: the project's defaults
    rollout = Rollout.objects.get()
    assert [s["percent"] for s in rollout.stages] == [20, 60, 100]
    assert rollout.threshold == 1.5 and rollout.min_renders == 200
    # An editor may not change them; garbage is a message, not a 500.
    assert editor.post(url, {"stages": "5", "threshold": "1", "min_renders": "1"}).status_code == 302
    assert admin.post(url, {"stages": "x", "threshold": "nan", "min_renders": "-1"}).status_code == 302
    assert AuditEvent.objects.filter(action="project.rollout_settings").count() == 1

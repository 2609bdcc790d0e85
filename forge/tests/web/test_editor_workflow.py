"""The editor's place in the workflow: editing a LOCKED set in place, read-only while in review, submit from it."""

from __future__ import annotations

import pytest

from anvil_forge.audit.models import AuditEvent
from anvil_forge.core.exceptions import Conflict, PermissionDenied
from anvil_forge.prompts import services
from anvil_forge.prompts.models import Prompt, PromptSet, SetStatus
from forge.tests import factories

pytestmark = pytest.mark.django_db

PARAMS = {"param-0-name": "name", "param-0-type": "string", "param-0-required": "1"}


def _welcome(prompt_set: PromptSet) -> Prompt:
    return Prompt.objects.get(prompt_set=prompt_set, key="welcome.message")


def _actions_since(start: int) -> list[str]:
    return list(AuditEvent.objects.filter(pk__gt=start).order_by("id").values_list("action", flat=True))


def _last_event_id() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


# The service -------------------------------------------------------------------------------------------------


def test_update_with_reopen_locked_reopens_the_set_and_saves_in_one_go_audited_like_the_explicit_reopen(
    team, prompt_set
):
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    prompt = _welcome(prompt_set)
    start = _last_event_id()

    saved = services.prompt_update(
        actor=team.editor, prompt=prompt, base_revision=prompt.revision, template="Hey {{ name }}", reopen_locked=True
    )

    assert saved.template == "Hey {{ name }}"
    assert PromptSet.objects.get(pk=prompt_set.pk).status == SetStatus.LIVE
    assert _actions_since(start) == ["prompt_set.reopen", "prompt.update"]
    reopen = AuditEvent.objects.get(pk__gt=start, action="prompt_set.reopen")
    assert reopen.data == {"set": prompt_set.slug} and reopen.object_id == str(prompt_set.pk)


def test_update_of_a_locked_set_without_reopen_locked_is_still_refused(team, prompt_set):
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    prompt = _welcome(prompt_set)
    with pytest.raises(Conflict, match="LOCKED"):
        services.prompt_update(actor=team.editor, prompt=prompt, base_revision=prompt.revision, template="x")
    assert PromptSet.objects.get(pk=prompt_set.pk).status == SetStatus.LOCKED


def test_update_that_changes_nothing_leaves_the_locked_set_locked(team, prompt_set):
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    prompt = _welcome(prompt_set)
    start = _last_event_id()
    services.prompt_update(
        actor=team.editor, prompt=prompt, base_revision=prompt.revision, template=prompt.template, reopen_locked=True
    )
    assert PromptSet.objects.get(pk=prompt_set.pk).status == SetStatus.LOCKED
    assert _actions_since(start) == []


def test_a_refused_update_does_not_reopen_the_set(team, prompt_set):
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    prompt = _welcome(prompt_set)
    start = _last_event_id()
    with pytest.raises(Exception, match=r"(?i)syntax|line|unexpected"):
        services.prompt_update(
            actor=team.editor, prompt=prompt, base_revision=prompt.revision, template="{% if x %}", reopen_locked=True
        )
    assert PromptSet.objects.get(pk=prompt_set.pk).status == SetStatus.LOCKED
    assert _actions_since(start) == []


def test_update_with_reopen_locked_does_not_edit_a_set_in_review(team, prompt_set):
    services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    prompt = _welcome(prompt_set)
    with pytest.raises(Conflict, match="REVIEW"):
        services.prompt_update(
            actor=team.editor, prompt=prompt, base_revision=prompt.revision, template="x", reopen_locked=True
        )


def test_update_with_reopen_locked_needs_the_reopen_capability(team, prompt_set):
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    prompt = _welcome(prompt_set)
    with pytest.raises(PermissionDenied):
        services.prompt_update(
            actor=team.reviewer, prompt=prompt, base_revision=prompt.revision, template="x", reopen_locked=True
        )
    assert PromptSet.objects.get(pk=prompt_set.pk).status == SetStatus.LOCKED


# The page ----------------------------------------------------------------------------------------------------


def test_the_editor_of_a_locked_set_is_editable_and_says_the_first_save_reopens_it(as_user, team, urls, prompt_set):
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    body = as_user(team.editor).get(urls["prompt"]).content.decode()
    assert 'data-testid="reopen-note"' in body and "Version 1 was approved" in body
    assert 'name="save"' in body
    assert 'id="template" name="template"' in body and "readonly" not in body.split('id="template"')[1].split(">")[0]


def test_saving_a_locked_set_from_the_editor_reopens_it_and_saves(as_user, team, urls, prompt_set):
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    prompt = _welcome(prompt_set)
    start = _last_event_id()
    data = {"save": "1", "base_revision": prompt.revision, "template": "Hey {{ name }}", **PARAMS}
    response = as_user(team.editor).post(urls["prompt"], data)
    assert response.status_code == 302
    assert _welcome(prompt_set).template == "Hey {{ name }}"
    assert PromptSet.objects.get(pk=prompt_set.pk).status == SetStatus.LIVE
    assert _actions_since(start) == ["prompt_set.reopen", "prompt.update"]


def test_the_editor_of_a_set_in_review_is_read_only_says_why_and_links_the_review(as_user, team, urls, prompt_set):
    services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    body = as_user(team.editor).get(urls["prompt"]).content.decode()
    assert 'data-testid="read-only-note"' in body
    assert "Version 1 is waiting for review" in body
    assert f'href="{urls["set"]}#workflow-title">see the review</a>' in body
    assert 'name="save"' not in body


def test_a_reviewer_sees_a_locked_set_read_only(as_user, team, urls, prompt_set):
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    body = as_user(team.reviewer).get(urls["prompt"]).content.decode()
    assert "may read this prompt but not change it" in body and 'name="save"' not in body

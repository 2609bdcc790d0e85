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


# Submit from the editor --------------------------------------------------------------------------------------


def test_after_a_save_the_message_says_what_comes_next_and_the_editor_offers_submit(as_user, team, urls, prompt_set):
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    client = as_user(team.editor)
    assert 'id="submit-form"' not in client.get(urls["prompt"]).content.decode()  # nothing saved since version 1
    prompt = _welcome(prompt_set)
    data = {"save": "1", "base_revision": prompt.revision, "template": "Hey {{ name }}", **PARAMS}
    body = client.post(urls["prompt"], data, follow=True).content.decode()
    assert "Saved welcome.message." in body and "Submit the set for review when you are done." in body
    assert 'id="submit-form"' in body and "saved changes since version 1" in body
    assert f'action="{urls["prompt"]}submit/"' in body


def test_a_set_saved_back_to_its_last_version_offers_no_submit(as_user, team, urls, prompt_set):
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    prompt = _welcome(prompt_set)
    original = prompt.template
    saved = services.prompt_update(
        actor=team.editor, prompt=prompt, base_revision=prompt.revision, template="Hey {{ name }}", reopen_locked=True
    )
    client = as_user(team.editor)
    assert 'id="submit-form"' in client.get(urls["prompt"]).content.decode()
    services.prompt_update(actor=team.editor, prompt=saved, base_revision=saved.revision, template=original)
    assert 'id="submit-form"' not in client.get(urls["prompt"]).content.decode()


def test_a_new_set_offers_submit_and_a_role_without_submit_sees_no_form(as_user, team, urls):
    assert 'id="submit-form"' in as_user(team.editor).get(urls["prompt"]).content.decode()
    assert 'id="submit-form"' not in as_user(team.reviewer).get(urls["prompt"]).content.decode()


def test_submit_from_the_editor_makes_a_version_with_the_note_and_lands_on_it(as_user, team, urls, prompt_set):
    prompt_set.refresh_from_db()
    client = as_user(team.editor)
    response = client.post(urls["prompt"] + "submit/", {"base_revision": prompt_set.revision, "note": "New tone"})
    assert response.status_code == 302 and response["Location"] == urls["versions"] + "1/"
    assert PromptSet.objects.get(pk=prompt_set.pk).status == SetStatus.REVIEW
    event = AuditEvent.objects.get(action="prompt_set.submit")
    assert event.data["note"] == "New tone" and event.data["version"] == 1
    body = client.get(response["Location"]).content.decode()
    assert f"Submitted {prompt_set.slug} for review as version 1." in body


def test_submit_of_a_set_changed_since_the_page_was_opened_is_refused_on_the_editor(as_user, team, urls, prompt_set):
    prompt_set.refresh_from_db()
    opened = prompt_set.revision
    prompt = _welcome(prompt_set)
    services.prompt_update(actor=team.admin, prompt=prompt, base_revision=prompt.revision, template="Yo {{ name }}")
    response = as_user(team.editor).post(urls["prompt"] + "submit/", {"base_revision": opened, "note": "kept"})
    assert response.status_code == 409
    body = response.content.decode()
    assert "Not submitted." in body and 'value="kept"' in body
    assert PromptSet.objects.get(pk=prompt_set.pk).status == SetStatus.LIVE


def test_saving_a_locked_prompt_unchanged_says_so_and_leaves_the_set_locked(as_user, team, urls, prompt_set):
    plain = services.prompt_create(actor=team.editor, prompt_set=prompt_set, key="plain.text", template="Plain")
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    data = {"save": "1", "base_revision": plain.revision, "template": "Plain", "description": "", "metadata": ""}
    body = as_user(team.editor).post(urls["base"] + "prompts/plain.text/", data, follow=True).content.decode()
    assert "Nothing to save: plain.text is unchanged." in body
    assert PromptSet.objects.get(pk=prompt_set.pk).status == SetStatus.LOCKED

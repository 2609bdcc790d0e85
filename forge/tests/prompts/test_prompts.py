"""Editing prompts: validation, roles, organisations, stale revisions, and edits only while LIVE."""

from __future__ import annotations

import pytest

from anvil_forge.audit.models import AuditEvent
from anvil_forge.core.exceptions import ApplicationError, Conflict, NotFound, PermissionDenied
from anvil_forge.prompts import services
from anvil_forge.prompts.analysis import MAX_TEMPLATE_BYTES
from anvil_forge.prompts.models import Prompt, PromptSet
from forge.tests import factories


def _prompt(prompt_set, key="welcome.message") -> Prompt:
    return Prompt.objects.get(prompt_set=prompt_set, key=key)


@pytest.mark.parametrize("bad_id", ["Welcome.message", "welcome..message", "1st.prompt", "welcome message", "", "a.-b"])
def test_invalid_prompt_id_is_refused_naming_it(team, prompt_set, bad_id):
    with pytest.raises(ApplicationError, match="not a valid prompt id") as caught:
        services.prompt_create(actor=team.editor, prompt_set=prompt_set, key=bad_id, template="Hi")
    assert repr(bad_id) in caught.value.message
    assert not Prompt.objects.filter(prompt_set=prompt_set, key=bad_id).exists()


def test_duplicate_prompt_id_in_a_set_is_refused(team, prompt_set):
    with pytest.raises(Conflict, match=r"already has a prompt welcome\.message"):
        services.prompt_create(actor=team.editor, prompt_set=prompt_set, key="welcome.message", template="Hi")


def test_same_prompt_id_in_another_set_is_fine(team, project, prompt_set):
    other = factories.make_prompt_set_with_prompts(project, actor=team.editor, prompts=[])
    services.prompt_create(actor=team.editor, prompt_set=other, key="welcome.message", template="Hi")


def test_template_syntax_error_is_refused_with_line_and_message_and_nothing_saved(team, prompt_set):
    before = AuditEvent.objects.count()
    with pytest.raises(ApplicationError) as caught:
        services.prompt_create(
            actor=team.editor, prompt_set=prompt_set, key="broken", template="Line one\n{% if x %}never closed"
        )
    assert "line 2" in caught.value.message
    assert "endif" in caught.value.message or "end of template" in caught.value.message
    assert caught.value.extra["line"] == 2
    assert not Prompt.objects.filter(key="broken").exists()
    assert AuditEvent.objects.count() == before


def test_update_with_syntax_error_keeps_the_old_template(team, prompt_set):
    prompt = _prompt(prompt_set)
    with pytest.raises(ApplicationError, match="line 1"):
        services.prompt_update(actor=team.editor, prompt=prompt, base_revision=prompt.revision, template="{{ oops ")
    assert _prompt(prompt_set).template == prompt.template


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ([{"name": "n", "type": "integer"}], "'integer' is not one of"),
        ([{"name": "n", "type": "number", "default": "three"}], "'three' is not a number"),
        ([{"name": "n", "type": "string", "required": "yes"}], "must be true or false"),
        ([{"name": "n"}, {"name": "n"}], "declared twice"),
        ([{"name": "not valid", "type": "string"}], "not a valid variable name"),
        ("name", "must be a list"),
    ],
)
def test_invalid_parameters_are_refused_naming_the_problem(team, prompt_set, parameters, message):
    with pytest.raises(ApplicationError, match=message):
        services.prompt_create(
            actor=team.editor, prompt_set=prompt_set, key="p", template="{{ n }}", parameters=parameters
        )


def test_parameters_are_stored_normalised(team, prompt_set):
    prompt = services.prompt_create(
        actor=team.editor, prompt_set=prompt_set, key="p", template="{{ n }}", parameters=[{"name": "n"}]
    )
    assert prompt.parameters == [
        {"name": "n", "type": "string", "required": False, "default": None, "description": ""}
    ]


def test_oversized_template_and_bad_metadata_are_refused(team, prompt_set):
    with pytest.raises(ApplicationError, match="longer than 100 KB"):
        services.prompt_create(
            actor=team.editor, prompt_set=prompt_set, key="big", template="x" * (MAX_TEMPLATE_BYTES + 1)
        )
    with pytest.raises(ApplicationError, match="metadata of p must be an object"):
        services.prompt_create(actor=team.editor, prompt_set=prompt_set, key="p", template="x", metadata=["gpt"])
    with pytest.raises(ApplicationError, match="not plain JSON"):
        services.prompt_create(
            actor=team.editor, prompt_set=prompt_set, key="p", template="x", metadata={"t": float("nan")}
        )


@pytest.mark.parametrize("role", ["reviewer", "viewer"])
def test_roles_without_edit_cannot_create_update_rename_or_delete(team, prompt_set, role):
    user = team.member(role)
    prompt = _prompt(prompt_set)
    with pytest.raises(PermissionDenied):
        services.prompt_create(actor=user, prompt_set=prompt_set, key="new", template="x")
    with pytest.raises(PermissionDenied):
        services.prompt_update(actor=user, prompt=prompt, base_revision=prompt.revision, template="x")
    with pytest.raises(PermissionDenied):
        services.prompt_rename(actor=user, prompt=prompt, new_key="renamed")
    with pytest.raises(PermissionDenied):
        services.prompt_delete(actor=user, prompt=prompt)
    assert _prompt(prompt_set).template == prompt.template


def test_another_organisations_owner_gets_not_found_for_every_prompt_write(other_team, prompt_set):
    prompt = _prompt(prompt_set)
    owner = other_team.owner
    for attempt in (
        lambda: services.prompt_create(actor=owner, prompt_set=prompt_set, key="new", template="x"),
        lambda: services.prompt_update(actor=owner, prompt=prompt, base_revision=prompt.revision, template="x"),
        lambda: services.prompt_rename(actor=owner, prompt=prompt, new_key="renamed"),
        lambda: services.prompt_delete(actor=owner, prompt=prompt),
        lambda: services.prompt_set_submit(actor=owner, prompt_set=prompt_set),
        lambda: services.prompt_set_create(actor=owner, project=prompt_set.project, slug="mine"),
    ):
        with pytest.raises(NotFound):
            attempt()
    assert _prompt(prompt_set).template == prompt.template


def test_update_bumps_revisions_and_audits_changed_fields(team, prompt_set):
    prompt = _prompt(prompt_set)
    set_revision = PromptSet.objects.get(pk=prompt_set.pk).revision

    updated = services.prompt_update(
        actor=team.editor, prompt=prompt, base_revision=prompt.revision, template="Hey {{ name }}!"
    )

    assert updated.revision == prompt.revision + 1
    assert updated.updated_by == team.editor
    assert PromptSet.objects.get(pk=prompt_set.pk).revision == set_revision + 1
    event = AuditEvent.objects.filter(action="prompt.update").first()
    assert event.data["fields"] == ["template"] and event.actor == team.editor


def test_stale_edit_is_refused_naming_who_changed_it_and_nothing_is_overwritten(team, prompt_set):
    second_editor = team.add("editor", "grace")
    opened_by_both = _prompt(prompt_set)
    services.prompt_update(
        actor=second_editor, prompt=opened_by_both, base_revision=opened_by_both.revision, template="Grace's text"
    )

    with pytest.raises(Conflict) as caught:
        services.prompt_update(
            actor=team.editor, prompt=opened_by_both, base_revision=opened_by_both.revision, template="My text"
        )

    assert "grace" in caught.value.message and "UTC" in caught.value.message
    assert caught.value.extra["changed_by"] == "grace"
    assert _prompt(prompt_set).template == "Grace's text"


def test_unchanged_save_writes_nothing(team, prompt_set):
    prompt = _prompt(prompt_set)
    before = AuditEvent.objects.count()
    same = services.prompt_update(
        actor=team.editor, prompt=prompt, base_revision=prompt.revision, template=prompt.template
    )
    assert same.revision == prompt.revision
    assert AuditEvent.objects.count() == before


def test_rename_checks_id_and_uniqueness_and_audits(team, prompt_set):
    prompt = _prompt(prompt_set)
    with pytest.raises(ApplicationError, match="not a valid prompt id"):
        services.prompt_rename(actor=team.editor, prompt=prompt, new_key="Bad Id")
    with pytest.raises(Conflict, match=r"already has a prompt errors\.not_found"):
        services.prompt_rename(actor=team.editor, prompt=prompt, new_key="errors.not_found")

    renamed = services.prompt_rename(actor=team.editor, prompt=prompt, new_key="greeting.welcome")

    assert renamed.key == "greeting.welcome"
    assert AuditEvent.objects.get(action="prompt.rename").data == {
        "set": prompt_set.slug,
        "from": "welcome.message",
        "to": "greeting.welcome",
    }


def test_editing_a_prompt_someone_deleted_says_who_deleted_it(team, prompt_set):
    prompt = _prompt(prompt_set)
    services.prompt_delete(actor=team.admin, prompt=prompt)

    with pytest.raises(Conflict, match=f"deleted by {team.admin.username}"):
        services.prompt_update(actor=team.editor, prompt=prompt, base_revision=prompt.revision, template="x")
    assert not Prompt.objects.filter(pk=prompt.pk).exists()


@pytest.mark.parametrize("state", ["REVIEW", "LOCKED"])
def test_prompts_cannot_change_unless_the_set_is_live(team, prompt_set, state):
    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    if state == "LOCKED":
        services.version_approve(actor=team.reviewer, version=version)
    prompt = _prompt(prompt_set)

    for attempt in (
        lambda: services.prompt_create(actor=team.editor, prompt_set=prompt_set, key="new", template="x"),
        lambda: services.prompt_update(actor=team.editor, prompt=prompt, base_revision=prompt.revision, template="x"),
        lambda: services.prompt_rename(actor=team.editor, prompt=prompt, new_key="renamed"),
        lambda: services.prompt_delete(actor=team.editor, prompt=prompt),
    ):
        with pytest.raises(Conflict, match="only while it is LIVE"):
            attempt()
    assert _prompt(prompt_set).template == prompt.template


def test_a_set_holds_at_most_the_prompt_limit(team, prompt_set, monkeypatch):
    monkeypatch.setattr(services, "MAX_PROMPTS_PER_SET", 2)

    with pytest.raises(ApplicationError, match="at most 2 prompts"):
        services.prompt_create(actor=team.editor, prompt_set=prompt_set, key="third", template="x")

"""Importing into and exporting from a prompt set (``prompts.transfer``), through the real services."""

from __future__ import annotations

import pytest

from anvil_forge.audit.models import AuditEvent
from anvil_forge.core.exceptions import Conflict, NotFound, PermissionDenied
from anvil_forge.prompts import fileformat, services
from anvil_forge.prompts.fileformat import Collection
from anvil_forge.prompts.models import Prompt, PromptSet
from anvil_forge.prompts.transfer import import_plan, prompt_set_export, prompt_set_import
from forge.tests import factories

pytestmark = pytest.mark.django_db


def collection(*prompts: tuple[str, str], name: str | None = None) -> Collection:
    items = [
        {"id": key, "template": template, "description": "", "parameters": [], "metadata": {}}
        for key, template in prompts
    ]
    return Collection(sorted(items, key=lambda p: p["id"]), "files", set_name=name)


def reexport(prompt_set: PromptSet, actor, version: int | None = None) -> Collection:
    export = prompt_set_export(actor=actor, prompt_set=prompt_set, version=version)
    files = fileformat.export_files(name=export.name, description=export.description, prompts=export.prompts)
    return fileformat.load_upload([("export.zip", fileformat.build_zip(files))])


def test_importing_into_a_missing_set_creates_it_live_with_the_prompts_and_one_audit_event(team, project):
    plan = prompt_set_import(actor=team.editor, project=project, set_slug="imported",
                             collection=collection(("a.one", "A"), ("b.two", "B {{ x }}"), name="Imported"))

    prompt_set = PromptSet.objects.get(project=project, slug="imported")
    assert prompt_set.status == "LIVE"
    assert prompt_set.name == "Imported"
    assert sorted(prompt_set.prompts.values_list("key", flat=True)) == ["a.one", "b.two"]
    assert plan.summary == "2 added, 0 changed, 0 removed, 0 unchanged"
    event = AuditEvent.objects.get(action="prompt_set.import")
    assert event.data["added"] == ["a.one", "b.two"]
    assert event.data["created"] is True
    assert AuditEvent.objects.filter(action="prompt_set.create").count() == 1


def test_an_import_adds_changes_and_keeps_what_it_does_not_name(team, prompt_set):
    plan = prompt_set_import(
        actor=team.editor, project=prompt_set.project, set_slug=prompt_set.slug,
        collection=collection(("errors.not_found", "Nothing found: {{ thing }}."), ("fresh.one", "New")),
    )

    assert (plan.added, plan.changed, plan.removed, plan.kept) == (
        ["fresh.one"], ["errors.not_found"], [], ["welcome.message"])
    changed = Prompt.objects.get(prompt_set=prompt_set, key="errors.not_found")
    assert changed.template == "Nothing found: {{ thing }}."
    assert changed.revision == 2
    assert Prompt.objects.filter(prompt_set=prompt_set, key="welcome.message").exists()


def test_prune_removes_the_prompts_the_import_does_not_name(team, prompt_set):
    plan = prompt_set_import(actor=team.editor, project=prompt_set.project, set_slug=prompt_set.slug,
                             collection=collection(("fresh.one", "New")), prune=True)

    assert sorted(plan.removed) == ["errors.not_found", "welcome.message"]
    assert list(prompt_set.prompts.values_list("key", flat=True)) == ["fresh.one"]


def test_importing_an_export_changes_nothing_and_writes_no_audit_event(team, prompt_set):
    revision = PromptSet.objects.get(pk=prompt_set.pk).revision
    events = AuditEvent.objects.count()

    plan = prompt_set_import(actor=team.editor, project=prompt_set.project, set_slug=prompt_set.slug,
                             collection=reexport(prompt_set, team.viewer), prune=True)

    assert plan.summary == "0 added, 0 changed, 0 removed, 2 unchanged"
    assert AuditEvent.objects.count() == events
    assert PromptSet.objects.get(pk=prompt_set.pk).revision == revision


def test_a_version_export_holds_that_versions_content(team, prompt_set):
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    factories.edit_prompt(prompt_set, "errors.not_found", "changed in v2", actor=team.editor)
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)

    export = prompt_set_export(actor=team.viewer, prompt_set=prompt_set, version=1)

    assert [p["id"] for p in export.prompts] == ["errors.not_found", "welcome.message"]
    assert export.prompts[0]["template"] == "Sorry, we could not find {{ thing }}."
    assert prompt_set_export(actor=team.viewer, prompt_set=prompt_set, version=2).prompts[0]["template"] == (
        "changed in v2")
    with pytest.raises(NotFound):
        prompt_set_export(actor=team.viewer, prompt_set=prompt_set, version=9)


@pytest.mark.parametrize("role", ["reviewer", "viewer"])
def test_a_role_that_may_not_edit_cannot_import_and_nothing_changes(team, prompt_set, role):
    with pytest.raises(PermissionDenied):
        prompt_set_import(actor=team.member(role), project=prompt_set.project, set_slug="new-set",
                          collection=collection(("a", "A")))

    assert not PromptSet.objects.filter(slug="new-set").exists()


def test_another_organisations_member_cannot_import_or_export(team, other_team, prompt_set):
    with pytest.raises(NotFound):
        prompt_set_import(actor=other_team.owner, project=prompt_set.project, set_slug=prompt_set.slug,
                          collection=collection(("a", "A")))
    with pytest.raises(NotFound):
        prompt_set_export(actor=other_team.owner, prompt_set=prompt_set)


def test_a_set_in_review_refuses_an_import_that_changes_it_but_reports_one_that_does_not(team, prompt_set):
    factories.make_submitted_version(prompt_set, author=team.editor)

    with pytest.raises(Conflict, match="only while it is LIVE"):
        prompt_set_import(actor=team.editor, project=prompt_set.project, set_slug=prompt_set.slug,
                          collection=collection(("a", "A")))
    plan = prompt_set_import(actor=team.editor, project=prompt_set.project, set_slug=prompt_set.slug,
                             collection=reexport(prompt_set, team.editor))

    assert plan.summary == "0 added, 0 changed, 0 removed, 2 unchanged"
    assert not Prompt.objects.filter(prompt_set=prompt_set, key="a").exists()


def test_an_import_from_a_stale_preview_is_refused(team, prompt_set):
    plan = import_plan(actor=team.editor, project=prompt_set.project, set_slug=prompt_set.slug,
                       collection=collection(("a", "A")))
    factories.edit_prompt(prompt_set, "errors.not_found", "edited meanwhile", actor=team.admin)

    with pytest.raises(Conflict, match="changed since the preview"):
        prompt_set_import(actor=team.editor, project=prompt_set.project, set_slug=prompt_set.slug,
                          collection=collection(("a", "A")), base_revision=plan.revision)

    assert not Prompt.objects.filter(prompt_set=prompt_set, key="a").exists()


def test_an_import_past_the_set_limit_is_refused_and_nothing_is_written(team, prompt_set, monkeypatch):
    from anvil_forge.prompts import transfer

    monkeypatch.setattr(transfer, "MAX_PROMPTS_PER_SET", 3)

    with pytest.raises(Exception, match="more than the 3"):
        prompt_set_import(actor=team.editor, project=prompt_set.project, set_slug=prompt_set.slug,
                          collection=collection(("a", "A"), ("b", "B")))

    assert prompt_set.prompts.count() == 2


def test_set_yaml_renames_an_existing_set_and_the_audit_says_so(team, prompt_set):
    prompt_set_import(actor=team.editor, project=prompt_set.project, set_slug=prompt_set.slug,
                      collection=collection(name="Renamed by import"))

    assert PromptSet.objects.get(pk=prompt_set.pk).name == "Renamed by import"
    assert AuditEvent.objects.get(action="prompt_set.import").data["set_changes"] == {"name": "Renamed by import"}

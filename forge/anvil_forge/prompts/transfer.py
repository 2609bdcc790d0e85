"""Import prompts into a set and export a set's prompts (the file format is ``prompts.fileformat``).

:func:`prompt_set_import` adds, changes and (with ``prune``) removes prompts in one transaction, with the
editor's role check, leaving the set LIVE (editing) so the usual review applies, and one audit event.
:func:`import_plan` says what an import would do without writing; :func:`prompt_set_export` reads the
current editing content or a version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from anvil_client.bundle import normalise_prompt
from anvil_forge.accounts.permissions import Actor, Capability, require
from anvil_forge.audit.services import audit_record
from anvil_forge.core.exceptions import ApplicationError, Conflict
from anvil_forge.core.validation import validate_name, validate_slug
from anvil_forge.prompts import selectors
from anvil_forge.prompts.analysis import MAX_PROMPTS_PER_SET
from anvil_forge.prompts.fileformat import Collection
from anvil_forge.prompts.models import Project, Prompt, PromptSet
from anvil_forge.prompts.services import (
    _lock_set,
    _require_editable,
    _touch_set,
    _user,
    prompt_set_create,
)

__all__ = ["ImportPlan", "SetExport", "import_plan", "prompt_set_export", "prompt_set_import"]


@dataclass
class ImportPlan:
    """What an import does (or did) to a set: ids added, changed, removed, unchanged, and kept (not pruned)."""

    set_slug: str
    set_exists: bool
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # in the set, not in the import, left alone (no prune)
    set_changes: dict[str, Any] = field(default_factory=dict)  # name / description from set.yaml
    before: dict[str, Any] = field(default_factory=dict)  # {"prompts": [...]} now
    after: dict[str, Any] = field(default_factory=dict)  # {"prompts": [...]} after the import
    revision: int | None = None  # the set's revision the plan was made from

    @property
    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.changed)} changed, {len(self.removed)} removed, "
            f"{len(self.unchanged)} unchanged"
        )

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.set_changes or not self.set_exists)


@dataclass
class SetExport:
    """What an export writes: the set's name and description, and its prompts (normalised, by id)."""

    slug: str
    name: str
    description: str
    prompts: list[dict[str, Any]]
    version: int | None = None


def _with_tests(prompt: dict[str, Any], tests: list[dict[str, Any]] | None) -> dict[str, Any]:
    """A normalised prompt with its test cases, when it has any (the file format's ``tests``)."""
    return {**prompt, "tests": tests} if tests else prompt


def _current(prompt_set: PromptSet | None) -> dict[str, dict[str, Any]]:
    if prompt_set is None:
        return {}
    return {
        p.key: _with_tests(
            normalise_prompt(
                {"id": p.key, "template": p.template, "description": p.description, "parameters": p.parameters,
                 "metadata": p.metadata}
            ),
            p.tests,
        )
        for p in Prompt.objects.filter(prompt_set=prompt_set).order_by("key")
    }


def _plan(prompt_set: PromptSet | None, set_slug: str, collection: Collection, prune: bool) -> ImportPlan:
    current = _current(prompt_set)
    incoming = {p["id"]: p for p in collection.prompts}
    plan = ImportPlan(set_slug=set_slug, set_exists=prompt_set is not None,
                      revision=prompt_set.revision if prompt_set else None)
    for key in sorted(incoming.keys() | current.keys()):
        new, old = incoming.get(key), current.get(key)
        if old is None:
            plan.added.append(key)
        elif new is None:
            (plan.removed if prune else plan.kept).append(key)
        elif new == old:
            plan.unchanged.append(key)
        else:
            plan.changed.append(key)
    after = {**current, **incoming}
    for key in plan.removed:
        after.pop(key)
    plan.before = {"prompts": [current[k] for k in sorted(current)]}
    plan.after = {"prompts": [after[k] for k in sorted(after)]}
    if prompt_set is not None:
        if collection.set_name is not None and collection.set_name.strip() != prompt_set.name:
            plan.set_changes["name"] = collection.set_name.strip()
        if collection.set_description is not None and collection.set_description != prompt_set.description:
            plan.set_changes["description"] = collection.set_description
    if len(after) > MAX_PROMPTS_PER_SET:
        raise ApplicationError(
            f"{set_slug} would hold {len(after)} prompts, more than the {MAX_PROMPTS_PER_SET} a set may hold."
        )
    return plan


def _existing(project: Project, set_slug: str) -> PromptSet | None:
    return PromptSet.objects.filter(project=project, slug=set_slug).select_related("project__organisation").first()


def import_plan(*, actor: Actor, project: Project, set_slug: str, collection: Collection,
                prune: bool = False) -> ImportPlan:
    """What :func:`prompt_set_import` would do now, without writing (for a preview)."""
    require(actor, project.organisation, Capability.EDIT, what=f"project {project}")
    validate_slug(set_slug, what="prompt set")
    return _plan(_existing(project, set_slug), set_slug, collection, prune)


def prompt_set_import(
    *,
    actor: Actor,
    project: Project,
    set_slug: str,
    collection: Collection,
    prune: bool = False,
    base_revision: int | None = None,
    source: str = "",
) -> ImportPlan:
    """Bring ``collection`` into the set ``set_slug`` (created, LIVE, if missing), in one transaction.

    Prompts in the collection are added or changed; with ``prune`` the set's other prompts are removed.
    A set in REVIEW or LOCKED is refused when the import would change it (an import that changes nothing
    is fine: it reports all unchanged). ``base_revision`` (from a preview) refuses an import into a set
    that changed since. One ``prompt_set.import`` audit event lists what changed.
    """
    require(actor, project.organisation, Capability.EDIT, what=f"project {project}")
    validate_slug(set_slug, what="prompt set")
    if collection.set_name is not None:
        validate_name(collection.set_name, what="prompt set name")
    with transaction.atomic():
        prompt_set = _existing(project, set_slug)
        created = prompt_set is None
        if prompt_set is not None:
            prompt_set = _lock_set(prompt_set)
            if base_revision is not None and prompt_set.revision != base_revision:
                raise Conflict(
                    f"{set_slug} changed since the preview (it is at revision {prompt_set.revision}, the preview was "
                    f"made at {base_revision}); nothing was imported. Look at the preview again."
                )
        elif base_revision is not None:
            raise Conflict(f"{set_slug} was removed or renamed since the preview; nothing was imported.")
        plan = _plan(prompt_set, set_slug, collection, prune)
        if not plan.has_changes:
            return plan
        if prompt_set is None:
            prompt_set = prompt_set_create(
                actor=actor, project=project, slug=set_slug, name=collection.set_name or set_slug,
                description=collection.set_description or "",
            )
            prompt_set = _lock_set(prompt_set)
        if plan.added or plan.changed or plan.removed:
            _require_editable(prompt_set)
        _apply(prompt_set, plan, collection, actor)
        if plan.set_changes:
            for key, value in plan.set_changes.items():
                setattr(prompt_set, key, value)
            prompt_set.save(update_fields=[*plan.set_changes, "updated_at"])
        _touch_set(prompt_set, actor)
        audit_record(
            actor=actor,
            action="prompt_set.import",
            obj=prompt_set,
            organisation=project.organisation,
            project=project,
            data={
                "set": set_slug,
                "source": source or collection.origin,
                "created": created,
                "added": plan.added,
                "changed": plan.changed,
                "removed": plan.removed,
                "unchanged": len(plan.unchanged),
                **({"set_changes": plan.set_changes} if plan.set_changes else {}),
            },
        )
        plan.set_exists = True
    return plan


def _apply(prompt_set: PromptSet, plan: ImportPlan, collection: Collection, actor: Actor) -> None:
    incoming = {p["id"]: p for p in collection.prompts}
    user = _user(actor)
    if plan.removed:
        Prompt.objects.filter(prompt_set=prompt_set, key__in=plan.removed).delete()
    for prompt in Prompt.objects.select_for_update(of=("self",)).filter(prompt_set=prompt_set, key__in=plan.changed):
        new = incoming[prompt.key]
        prompt.template = new["template"]
        prompt.description = new["description"]
        prompt.parameters = new["parameters"]
        prompt.metadata = new["metadata"]
        prompt.tests = new.get("tests", [])
        prompt.revision += 1
        prompt.updated_by = user
        prompt.save()
    Prompt.objects.bulk_create(
        [
            Prompt(
                prompt_set=prompt_set,
                key=key,
                template=incoming[key]["template"],
                description=incoming[key]["description"],
                parameters=incoming[key]["parameters"],
                metadata=incoming[key]["metadata"],
                tests=incoming[key].get("tests", []),
                updated_by=user,
            )
            for key in plan.added
        ]
    )


def prompt_set_export(*, actor: Actor, prompt_set: PromptSet, version: int | None = None) -> SetExport:
    """The set's current editing content, or version ``version``'s, ready for ``fileformat.export_files``."""
    require(actor, prompt_set.project.organisation, Capability.VIEW, what=f"prompt set {prompt_set}")
    if version is None:
        prompts = list(_current(prompt_set).values())
    else:
        found = selectors.version_get(actor=actor, prompt_set=prompt_set, number=version)
        tests = found.snapshot.get("tests", {})
        prompts = [_with_tests(normalise_prompt(p), tests.get(p["id"])) for p in found.snapshot.get("prompts", [])]
    return SetExport(
        slug=prompt_set.slug,
        name=prompt_set.name,
        description=prompt_set.description,
        prompts=sorted(prompts, key=lambda p: p["id"]),
        version=version,
    )

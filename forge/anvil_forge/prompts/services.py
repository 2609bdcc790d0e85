"""Every write to projects, environments, prompt sets, prompts, versions and releases.

Each service checks the actor's role (``accounts.permissions``), runs in one ``transaction.atomic`` and
writes its audit event inside it. Objects passed in may be stale: each service re-reads (and locks) what
it changes. Writes to one prompt set are serialised by locking the set's row (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises all writers), so an edit cannot slip between a
snapshot and its status change.

Workflow: LIVE --submit--> REVIEW --approve--> LOCKED --reopen--> LIVE; REVIEW --request changes--> LIVE.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from anvil_client.bundle import content_digest, normalise_prompt
from anvil_forge.accounts.models import Organisation, Role
from anvil_forge.accounts.permissions import Actor, Capability, SystemActor, require, role_of
from anvil_forge.accounts.services import (
    membership_add,
    membership_remove,
    membership_set_role,
    organisation_create,
    user_create,
)
from anvil_forge.audit.models import AuditEvent
from anvil_forge.audit.services import audit_record
from anvil_forge.core.exceptions import ApplicationError, Conflict, NotFound, PermissionDenied
from anvil_forge.core.validation import validate_name, validate_slug
from anvil_forge.distribution import events
from anvil_forge.distribution.models import Release
from anvil_forge.notifications.services import notify_reviewed, notify_submitted
from anvil_forge.prompts.analysis import (
    MAX_PROMPTS_PER_SET,
    prompt_analysis,
    prompt_preview,
    validate_prompt_fields,
    validate_prompt_id,
)
from anvil_forge.prompts.models import (
    PRODUCTION,
    Environment,
    Project,
    Prompt,
    PromptSet,
    PromptSetVersion,
    SetStatus,
    VersionState,
)
from anvil_forge.prompts.samples import failing_samples, results_for, snapshot_tests, validate_tests

__all__ = [
    "environment_create",
    "environment_delete",
    "environment_update",
    "membership_add",
    "membership_remove",
    "membership_set_role",
    "organisation_create",
    "project_create",
    "project_update",
    "prompt_analysis",
    "prompt_create",
    "prompt_delete",
    "prompt_preview",
    "prompt_rename",
    "prompt_set_archive",
    "prompt_set_create",
    "prompt_set_reopen",
    "prompt_set_submit",
    "prompt_set_update",
    "prompt_update",
    "user_create",
    "version_approve",
    "version_publish",
    "version_request_changes",
    "version_rollback",
]

MAX_COMMENT_CHARS = 5_000
_UNCHANGED: Any = object()


def _apply_changes(obj: Any, changes: dict[str, Any], also_save: list[str] | None = None) -> tuple[dict, dict]:
    """Set and save the fields of ``changes`` that differ; return ``(old values, real changes)`` for the audit."""
    changes = {k: v for k, v in changes.items() if getattr(obj, k) != v}
    old = {k: getattr(obj, k) for k in changes}
    if changes:
        for key, value in changes.items():
            setattr(obj, key, value)
        obj.save(update_fields=[*changes, *(also_save or [])])
    return old, changes


# Projects and environments ---------------------------------------------------------------------------------


def project_create(
    *,
    actor: Actor,
    organisation: Organisation,
    slug: str,
    name: str = "",
    description: str = "",
    require_four_eyes: bool = True,
    staging: bool = False,
) -> Project:
    """Create a project with its ``production`` environment (which never takes versions in review), and with
    ``staging`` a ``staging`` environment that takes versions still in review, for testing."""
    require(actor, organisation, Capability.MANAGE_PROJECT, what=f"organisation {organisation.slug}")
    validate_slug(slug, what="project")
    name = validate_name(name or slug, what="project name")
    with transaction.atomic():
        if Project.objects.filter(organisation=organisation, slug=slug).exists():
            raise Conflict(f"{organisation.slug} already has a project named {slug}.")
        project = Project.objects.create(
            organisation=organisation,
            slug=slug,
            name=name,
            description=description or "",
            require_four_eyes=require_four_eyes,
        )
        production = Environment.objects.create(
            project=project, slug=PRODUCTION, name="Production", accepts_review_versions=False
        )
        audit_record(
            actor=actor,
            action="project.create",
            obj=project,
            organisation=organisation,
            project=project,
            data={"require_four_eyes": require_four_eyes},
        )
        audit_record(
            actor=actor, action="environment.create", obj=production, organisation=organisation, project=project
        )
        if staging:
            environment_create(actor=actor, project=project, slug="staging", accepts_review_versions=True)
    return project


def project_update(
    *,
    actor: Actor,
    project: Project,
    name: str | None = None,
    description: str | None = None,
    require_four_eyes: bool | None = None,
) -> Project:
    """Change a project's settings (admins and owners; four eyes on or off: owners only). ``None`` leaves a
    field as it is."""
    organisation = project.organisation
    require(actor, organisation, Capability.MANAGE_PROJECT, what=f"project {project}")
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=project.pk)
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = validate_name(name, what="project name")
        if description is not None:
            changes["description"] = description
        if require_four_eyes is not None and bool(require_four_eyes) != project.require_four_eyes:
            if not isinstance(actor, SystemActor) and role_of(actor, organisation) != Role.OWNER:
                raise PermissionDenied(f"Only an owner of {organisation.slug} may turn four eyes on or off.")
            changes["require_four_eyes"] = bool(require_four_eyes)
        old, changes = _apply_changes(project, changes)
        if not changes:
            return project
        audit_record(
            actor=actor,
            action="project.update",
            obj=project,
            organisation=organisation,
            project=project,
            data={"from": old, "to": changes},
        )
    return project


def environment_create(
    *, actor: Actor, project: Project, slug: str, name: str = "", accepts_review_versions: bool = False
) -> Environment:
    """Add an environment to a project. ``production`` exists already and never accepts review versions."""
    organisation = project.organisation
    require(actor, organisation, Capability.MANAGE_ENVIRONMENTS, what=f"project {project}")
    validate_slug(slug, what="environment")
    if slug == PRODUCTION and accepts_review_versions:
        raise ApplicationError("The production environment never accepts versions that are still in review.")
    name = validate_name(name or slug.replace("-", " ").replace("_", " ").title(), what="environment name")
    with transaction.atomic():
        if Environment.objects.filter(project=project, slug=slug).exists():
            raise Conflict(f"{project} already has an environment named {slug}.")
        environment = Environment.objects.create(
            project=project, slug=slug, name=name, accepts_review_versions=accepts_review_versions
        )
        audit_record(
            actor=actor,
            action="environment.create",
            obj=environment,
            organisation=organisation,
            project=project,
            data={"accepts_review_versions": accepts_review_versions},
        )
    return environment


def environment_update(
    *, actor: Actor, environment: Environment, name: str | None = None, accepts_review_versions: bool | None = None
) -> Environment:
    """Rename an environment or change whether it accepts versions in review (never for production)."""
    project = environment.project
    organisation = project.organisation
    require(actor, organisation, Capability.MANAGE_ENVIRONMENTS, what=f"project {project}")
    with transaction.atomic():
        environment = Environment.objects.select_for_update().get(pk=environment.pk)
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = validate_name(name, what="environment name")
        if accepts_review_versions is not None:
            if environment.is_production and accepts_review_versions:
                raise ApplicationError("The production environment never accepts versions that are still in review.")
            changes["accepts_review_versions"] = bool(accepts_review_versions)
        old, changes = _apply_changes(environment, changes)
        if not changes:
            return environment
        audit_record(
            actor=actor,
            action="environment.update",
            obj=environment,
            organisation=organisation,
            project=project,
            data={"from": old, "to": changes},
        )
    return environment


def environment_delete(*, actor: Actor, environment: Environment) -> None:
    """Remove an environment nothing uses: never production, never while tokens or releases point at it."""
    project = environment.project
    organisation = project.organisation
    require(actor, organisation, Capability.MANAGE_ENVIRONMENTS, what=f"project {project}")
    with transaction.atomic():
        environment = Environment.objects.select_for_update().get(pk=environment.pk)
        if environment.is_production:
            raise ApplicationError("The production environment cannot be removed.")
        tokens = list(environment.access_tokens.order_by("name").values_list("name", "prefix", "revoked_at"))
        releases = list(
            Release.objects.filter(environment=environment)
            .values_list("prompt_set__slug", flat=True)
            .order_by("prompt_set__slug")
            .distinct()
        )
        if tokens or releases:
            reasons = []
            if tokens:
                named = ", ".join(
                    f"{name} ({prefix}…{', revoked' if revoked else ''})" for name, prefix, revoked in tokens
                )
                reasons.append(f"{len(tokens)} access token{'s' if len(tokens) != 1 else ''} ({named})")
            if releases:
                reasons.append(f"releases of the prompt set{'s' if len(releases) != 1 else ''} {', '.join(releases)}")
            raise Conflict(
                f"{environment.slug} cannot be removed: {' and '.join(reasons)} use it. Their history stays; "
                "rename the environment instead if only its name is wrong.",
                {"tokens": [name for name, _, _ in tokens], "prompt_sets": releases},
            )
        audit_record(
            actor=actor,
            action="environment.delete",
            obj=environment,
            organisation=organisation,
            project=project,
            data={"slug": environment.slug, "name": environment.name},
        )
        environment.delete()


# Prompt sets and prompts -----------------------------------------------------------------------------------


def prompt_set_create(*, actor: Actor, project: Project, slug: str, name: str = "", description: str = "") -> PromptSet:
    """Create an empty prompt set, LIVE (open for editing)."""
    organisation = project.organisation
    require(actor, organisation, Capability.EDIT, what=f"project {project}")
    validate_slug(slug, what="prompt set")
    name = validate_name(name or slug, what="prompt set name")
    with transaction.atomic():
        if PromptSet.objects.filter(project=project, slug=slug).exists():
            raise Conflict(f"{project} already has a prompt set named {slug}.")
        prompt_set = PromptSet.objects.create(
            project=project, slug=slug, name=name, description=description or "", updated_by=_user(actor)
        )
        audit_record(
            actor=actor, action="prompt_set.create", obj=prompt_set, organisation=organisation, project=project
        )
    return prompt_set


def prompt_set_update(
    *, actor: Actor, prompt_set: PromptSet, name: str | None = None, description: str | None = None
) -> PromptSet:
    """Change a set's display name or description (any status: they are not part of its versions)."""
    project = prompt_set.project
    require(actor, project.organisation, Capability.EDIT, what=f"prompt set {prompt_set}")
    with transaction.atomic():
        prompt_set = _lock_set(prompt_set)
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = validate_name(name, what="prompt set name")
        if description is not None:
            if not isinstance(description, str) or len(description) > MAX_COMMENT_CHARS:
                raise ApplicationError(f"The description must be text of at most {MAX_COMMENT_CHARS} characters.")
            changes["description"] = description
        old, changes = _apply_changes(prompt_set, changes, also_save=["updated_at"])
        if not changes:
            return prompt_set
        audit_record(
            actor=actor,
            action="prompt_set.update",
            obj=prompt_set,
            organisation=project.organisation,
            project=project,
            data={"from": old, "to": changes},
        )
    return prompt_set


def prompt_set_archive(*, actor: Actor, prompt_set: PromptSet, archived: bool = True) -> PromptSet:
    """Archive a set (hidden, publishes and edits nothing new, keeps its history), or restore it.

    What is live stays live: LIVE instances keep the version they have until another release replaces it.
    """
    project = prompt_set.project
    require(actor, project.organisation, Capability.MANAGE_PROJECT, what=f"prompt set {prompt_set}")
    with transaction.atomic():
        prompt_set = _lock_set(prompt_set)
        if bool(prompt_set.archived_at) == archived:
            return prompt_set
        prompt_set.archived_at = timezone.now() if archived else None
        prompt_set.save(update_fields=["archived_at", "updated_at"])
        audit_record(
            actor=actor,
            action="prompt_set.archive" if archived else "prompt_set.restore",
            obj=prompt_set,
            organisation=project.organisation,
            project=project,
        )
    return prompt_set


def prompt_create(
    *,
    actor: Actor,
    prompt_set: PromptSet,
    key: str,
    template: str,
    description: str = "",
    parameters: list[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
    tests: list[dict[str, Any]] | None = None,
) -> Prompt:
    """Add a prompt to a LIVE set. The id, template, parameters, metadata and test cases are checked first."""
    project = prompt_set.project
    require(actor, project.organisation, Capability.EDIT, what=f"prompt set {prompt_set}")
    parameters = validate_prompt_fields(
        key=key, template=template, description=description, parameters=parameters or [], metadata=metadata or {}
    )
    tests = validate_tests(key=key, tests=tests, parameters=parameters)
    with transaction.atomic():
        prompt_set = _lock_set(prompt_set)
        _require_editable(prompt_set)
        if prompt_set.prompts.filter(key=key).exists():
            raise Conflict(f"{prompt_set.slug} already has a prompt {key}.", {"field": "key"})
        if prompt_set.prompts.count() >= MAX_PROMPTS_PER_SET:
            raise ApplicationError(f"A prompt set holds at most {MAX_PROMPTS_PER_SET} prompts.")
        prompt = Prompt.objects.create(
            prompt_set=prompt_set,
            key=key,
            template=template,
            description=description,
            parameters=parameters,
            metadata=dict(metadata or {}),
            tests=tests,
            updated_by=_user(actor),
        )
        _touch_set(prompt_set, actor)
        audit_record(
            actor=actor,
            action="prompt.create",
            obj=prompt,
            organisation=project.organisation,
            project=project,
            data={"set": prompt_set.slug, "key": key},
        )
    return prompt


def prompt_update(
    *,
    actor: Actor,
    prompt: Prompt,
    base_revision: int,
    template: str = _UNCHANGED,
    description: str = _UNCHANGED,
    parameters: list[dict[str, Any]] = _UNCHANGED,
    metadata: dict[str, Any] = _UNCHANGED,
    tests: list[dict[str, Any]] = _UNCHANGED,
    reopen_locked: bool = False,
) -> Prompt:
    """Save changes to a prompt that the actor made starting from ``base_revision``.

    When someone else saved the prompt since (its revision moved on), nothing is written and
    :class:`Conflict` says who changed it and when, so the editor can keep their text and merge.
    Fields left out stay as they are. With ``reopen_locked`` a save that changes a prompt of a LOCKED set
    first reopens the set (audited as ``prompt_set.reopen``, as the explicit reopen is), in the same
    transaction; a save that changes nothing leaves the set LOCKED.
    """
    prompt_set = prompt.prompt_set
    project = prompt_set.project
    require(actor, project.organisation, Capability.EDIT, what=f"prompt {prompt.key}")
    with transaction.atomic():
        prompt_set = _lock_set(prompt_set)
        reopen = reopen_locked and prompt_set.status == SetStatus.LOCKED and prompt_set.archived_at is None
        if reopen:
            require(actor, project.organisation, Capability.REOPEN, what=f"prompt set {prompt_set}")
        else:
            _require_editable(prompt_set)
        current = _lock_prompt(prompt)
        _require_revision(current, base_revision)
        new = {
            "template": current.template if template is _UNCHANGED else template,
            "description": current.description if description is _UNCHANGED else description,
            "parameters": current.parameters if parameters is _UNCHANGED else parameters,
            "metadata": current.metadata if metadata is _UNCHANGED else metadata,
        }
        new["parameters"] = validate_prompt_fields(key=current.key, **new)
        new["metadata"] = dict(new["metadata"])
        # Kept test cases are checked again too: they must still fit the parameters.
        new["tests"] = validate_tests(
            key=current.key, tests=current.tests if tests is _UNCHANGED else tests, parameters=new["parameters"]
        )
        changed = sorted(k for k, v in new.items() if getattr(current, k) != v)
        if not changed:
            return current
        if reopen:
            _reopen(prompt_set, actor)
        for key, value in new.items():
            setattr(current, key, value)
        current.revision += 1
        current.updated_by = _user(actor)
        current.save()
        _touch_set(prompt_set, actor)
        audit_record(
            actor=actor,
            action="prompt.update",
            obj=current,
            organisation=project.organisation,
            project=project,
            data={"set": prompt_set.slug, "key": current.key, "fields": changed, "revision": current.revision},
        )
    return current


def prompt_rename(*, actor: Actor, prompt: Prompt, new_key: str, base_revision: int | None = None) -> Prompt:
    """Give a prompt a new id (unique in its set). ``base_revision``, when given, refuses a stale rename."""
    prompt_set = prompt.prompt_set
    project = prompt_set.project
    require(actor, project.organisation, Capability.EDIT, what=f"prompt {prompt.key}")
    validate_prompt_id(new_key)
    with transaction.atomic():
        prompt_set = _lock_set(prompt_set)
        _require_editable(prompt_set)
        current = _lock_prompt(prompt)
        if base_revision is not None:
            _require_revision(current, base_revision)
        old_key = current.key
        if old_key == new_key:
            return current
        if prompt_set.prompts.filter(key=new_key).exists():
            raise Conflict(f"{prompt_set.slug} already has a prompt {new_key}.", {"field": "key"})
        current.key = new_key
        current.revision += 1
        current.updated_by = _user(actor)
        current.save()
        _touch_set(prompt_set, actor)
        audit_record(
            actor=actor,
            action="prompt.rename",
            obj=current,
            organisation=project.organisation,
            project=project,
            data={"set": prompt_set.slug, "from": old_key, "to": new_key},
        )
    return current


def prompt_delete(*, actor: Actor, prompt: Prompt, base_revision: int | None = None) -> None:
    """Remove a prompt from a LIVE set (versions already made keep it)."""
    prompt_set = prompt.prompt_set
    project = prompt_set.project
    require(actor, project.organisation, Capability.EDIT, what=f"prompt {prompt.key}")
    with transaction.atomic():
        prompt_set = _lock_set(prompt_set)
        _require_editable(prompt_set)
        current = _lock_prompt(prompt)
        if base_revision is not None:
            _require_revision(current, base_revision)
        audit_record(
            actor=actor,
            action="prompt.delete",
            obj=current,
            organisation=project.organisation,
            project=project,
            data={"set": prompt_set.slug, "key": current.key, "template": current.template},
        )
        current.delete()
        _touch_set(prompt_set, actor)


# Review workflow -------------------------------------------------------------------------------------------


def prompt_set_submit(
    *, actor: Actor, prompt_set: PromptSet, base_revision: int | None = None, note: str = ""
) -> PromptSetVersion:
    """Submit a LIVE set for review: make the next numbered, immutable version and move the set to REVIEW.

    ``base_revision`` (the set revision the actor was looking at) refuses a submit of content the actor
    has not seen. ``note`` (optional, for the reviewer) is kept in the submit's audit event and with the
    version (``snapshot["note"]``, outside the digest) for the review inbox and page; the reviewers are notified.
    """
    project = prompt_set.project
    require(actor, project.organisation, Capability.SUBMIT, what=f"prompt set {prompt_set}")
    note = _comment(note, required=False)
    with transaction.atomic():
        prompt_set = _lock_set(prompt_set)
        if prompt_set.status != SetStatus.LIVE:
            raise Conflict(f"{prompt_set.slug} is {_status_words(prompt_set)}; only a LIVE set can be submitted.")
        if base_revision is not None and prompt_set.revision != base_revision:
            raise Conflict(
                f"{prompt_set.slug} changed since you opened it (last by {_username(prompt_set.updated_by)} at "
                f"{_when(prompt_set.updated_at)}); look at the changes, then submit again.",
                {"revision": prompt_set.revision},
            )
        prompts = sorted(
            (
                normalise_prompt(
                    {
                        "id": p.key,
                        "template": p.template,
                        "description": p.description,
                        "parameters": p.parameters,
                        "metadata": p.metadata,
                    }
                )
                for p in prompt_set.prompts.all()
            ),
            key=lambda p: p["id"],
        )
        if not prompts:
            raise ApplicationError(f"{prompt_set.slug} has no prompts yet; add one before submitting it.")
        # Test cases travel beside the prompts (never inside them: bundles and the digest take only prompts),
        # run once here and recorded with the version for its reviewer.
        tests = snapshot_tests(prompt_set.prompts.order_by("key").values_list("key", "tests"))
        snapshot: dict[str, Any] = {"prompts": prompts}
        if note:
            snapshot["note"] = note
        if tests:
            snapshot["tests"] = tests
            snapshot["test_results"] = results_for(prompts, tests)
        number = (prompt_set.versions.aggregate(n=Max("number"))["n"] or 0) + 1
        digest = content_digest(prompts)
        # Peering imports this module's models; import it here, not at module level.
        from anvil_forge.peering.selectors import provenance_for_submission

        version = PromptSetVersion.objects.create(
            prompt_set=prompt_set,
            number=number,
            snapshot=snapshot,
            digest=digest,
            state=VersionState.IN_REVIEW,
            created_by=_user(actor),
            # Content still exactly as copied from a peer FORGE: the version says where it came from.
            provenance=provenance_for_submission(prompt_set=prompt_set, digest=digest),
        )
        prompt_set.status = SetStatus.REVIEW
        _touch_set(prompt_set, actor, fields=["status"])
        audit_record(
            actor=actor,
            action="prompt_set.submit",
            obj=version,
            organisation=project.organisation,
            project=project,
            data={
                "set": prompt_set.slug,
                "version": number,
                "digest": version.digest,
                "prompts": len(prompts),
                **({"provenance": version.provenance} if version.provenance else {}),
                **({"tests": _tests_summary(snapshot["test_results"])} if tests else {}),
                **({"note": note} if note else {}),
            },
        )
        notify_submitted(actor=actor, version=version, note=note)
    return version


def version_approve(
    *, actor: Actor, version: PromptSetVersion, comment: str = "", override: bool = False
) -> PromptSetVersion:
    """Approve a version in review: the version becomes approved and its set LOCKED.

    With the project's four-eyes rule (the default) the version's author may not approve it. Two racing
    approvals make one: the state moves with a conditional UPDATE and the loser gets :class:`Conflict`.
    A version whose test cases failed at submit is approved only with ``override`` and a comment saying
    why; that approval is audited as ``prompt_set.approve_override`` besides ``version.approve``.
    """
    prompt_set = version.prompt_set
    project = prompt_set.project
    require(actor, project.organisation, Capability.REVIEW, what=f"version {version}")
    comment = _comment(comment, required=False)
    with transaction.atomic():
        prompt_set = _lock_set(prompt_set)
        project = prompt_set.project
        version = PromptSetVersion.objects.select_related("created_by", "reviewed_by").get(pk=version.pk)
        if project.require_four_eyes and version.created_by_id is not None and version.created_by_id == _user_id(actor):
            raise ApplicationError(
                f"You submitted version {version.number} of {prompt_set.slug}; this project asks for four eyes, "
                "so another reviewer must approve it."
            )
        failing = failing_samples(version.snapshot.get("test_results"))
        if failing and not override:
            raise ApplicationError(
                f"Version {version.number} of {prompt_set.slug} has failing test cases ({', '.join(failing)}). "
                "Request changes, or approve anyway with the override and a comment saying why.",
                {"field": "override", "failing": failing},
            )
        if failing and not comment:
            raise ApplicationError(
                "Approving despite failing test cases needs a comment saying why.",
                {"field": "comment", "failing": failing},
            )
        now = timezone.now()
        moved = PromptSetVersion.objects.filter(pk=version.pk, state=VersionState.IN_REVIEW).update(
            state=VersionState.APPROVED, reviewed_by=_user(actor), reviewed_at=now, review_comment=comment
        )
        if moved != 1:
            raise Conflict(_already_reviewed(version))
        version.refresh_from_db()
        prompt_set.status = SetStatus.LOCKED
        _touch_set(prompt_set, actor, fields=["status"])
        audit_record(
            actor=actor,
            action="version.approve",
            obj=version,
            organisation=project.organisation,
            project=project,
            data={
                "set": prompt_set.slug,
                "version": version.number,
                "digest": version.digest,
                "comment": comment,
                **({"override": True} if failing else {}),
            },
        )
        if failing:
            audit_record(
                actor=actor,
                action="prompt_set.approve_override",
                obj=version,
                organisation=project.organisation,
                project=project,
                data={"set": prompt_set.slug, "version": version.number, "failing": failing, "comment": comment},
            )
        notify_reviewed(actor=actor, version=version)
    return version


def version_request_changes(*, actor: Actor, version: PromptSetVersion, comment: str) -> PromptSetVersion:
    """Send a version in review back: the version is rejected (with the comment) and its set LIVE again."""
    prompt_set = version.prompt_set
    project = prompt_set.project
    require(actor, project.organisation, Capability.REVIEW, what=f"version {version}")
    comment = _comment(comment, required=True)
    with transaction.atomic():
        prompt_set = _lock_set(prompt_set)
        version = PromptSetVersion.objects.select_related("reviewed_by").get(pk=version.pk)
        moved = PromptSetVersion.objects.filter(pk=version.pk, state=VersionState.IN_REVIEW).update(
            state=VersionState.REJECTED, reviewed_by=_user(actor), reviewed_at=timezone.now(), review_comment=comment
        )
        if moved != 1:
            raise Conflict(_already_reviewed(version))
        version.refresh_from_db()
        prompt_set.status = SetStatus.LIVE
        _touch_set(prompt_set, actor, fields=["status"])
        audit_record(
            actor=actor,
            action="version.request_changes",
            obj=version,
            organisation=project.organisation,
            project=project,
            data={"set": prompt_set.slug, "version": version.number, "comment": comment},
        )
        notify_reviewed(actor=actor, version=version)
    return version


def prompt_set_reopen(*, actor: Actor, prompt_set: PromptSet) -> PromptSet:
    """Reopen a LOCKED set for editing; its prompts are the content that was approved."""
    project = prompt_set.project
    require(actor, project.organisation, Capability.REOPEN, what=f"prompt set {prompt_set}")
    with transaction.atomic():
        prompt_set = _lock_set(prompt_set)
        if prompt_set.status != SetStatus.LOCKED:
            raise Conflict(f"{prompt_set.slug} is {_status_words(prompt_set)}; only a LOCKED set can be reopened.")
        _reopen(prompt_set, actor)
    return prompt_set


def _reopen(prompt_set: PromptSet, actor: Actor) -> None:
    """LOCKED -> LIVE and its audit event (inside the caller's transaction, the set's row locked)."""
    project = prompt_set.project
    prompt_set.status = SetStatus.LIVE
    _touch_set(prompt_set, actor, fields=["status"])
    audit_record(
        actor=actor,
        action="prompt_set.reopen",
        obj=prompt_set,
        organisation=project.organisation,
        project=project,
        data={"set": prompt_set.slug},
    )


# Publishing ------------------------------------------------------------------------------------------------


def version_publish(
    *, actor: Actor, version: PromptSetVersion, environment: Environment, audit_extra: dict[str, Any] | None = None
) -> Release:
    """Publish a version to an environment: append a release and announce it to the LIVE streams.

    Only approved versions, except that a version in review may go to a non-production environment that
    accepts review versions. A version older than (or the same as) the one live there is refused: clients
    never step back, so going back is a rollback (a new version). Racing publishes of the same version to
    the same environment make one release; the environment's row is locked while deciding. ``audit_extra`` is
    added to the audit event's data (a scheduled release says ``scheduled`` and how late it was).
    """
    prompt_set = version.prompt_set
    project = prompt_set.project
    require(actor, project.organisation, Capability.PUBLISH, what=f"version {version}")
    if environment.project_id != project.pk:
        raise NotFound(f"{project} has no environment {environment.slug}.")
    with transaction.atomic():
        environment = Environment.objects.select_for_update().get(pk=environment.pk)
        version = PromptSetVersion.objects.select_related("prompt_set").get(pk=version.pk)
        if version.prompt_set.archived_at is not None:
            raise ApplicationError(f"{prompt_set.slug} is archived; restore it before publishing.")
        if version.state == VersionState.REJECTED:
            raise ApplicationError(
                f"Version {version.number} of {prompt_set.slug} had changes requested; it cannot be published."
            )
        if version.state == VersionState.IN_REVIEW and not environment.accepts_review_versions:
            if environment.is_production:
                raise ApplicationError(
                    f"Version {version.number} of {prompt_set.slug} is still in review; production takes only "
                    "approved versions."
                )
            raise ApplicationError(
                f"Version {version.number} of {prompt_set.slug} is still in review, and {environment.slug} takes "
                "only approved versions."
            )
        current = (
            Release.objects.filter(environment=environment, prompt_set_id=prompt_set.pk)
            .select_related("version", "published_by")
            .order_by("-id")
            .first()
        )
        if current is not None and current.version.number == version.number:
            raise Conflict(
                f"Version {version.number} of {prompt_set.slug} is already live in {environment.slug} "
                f"(published by {_username(current.published_by)} at {_when(current.published_at)})."
            )
        if current is not None and current.version.number > version.number:
            raise Conflict(
                f"Version {current.version.number} of {prompt_set.slug} is live in {environment.slug}, newer than "
                f"version {version.number}; LIVE instances never step back. Roll back instead: it makes a new "
                f"version with version {version.number}'s content."
            )
        release = Release.objects.create(
            environment=environment, prompt_set_id=prompt_set.pk, version=version, published_by=_user(actor)
        )
        audit_record(
            actor=actor,
            action="release.publish",
            obj=release,
            organisation=project.organisation,
            project=project,
            data={
                "set": prompt_set.slug,
                "environment": environment.slug,
                "version": version.number,
                "digest": version.digest,
                "state": version.state,
                "previous_version": current.version.number if current else None,
                **(audit_extra or {}),
            },
        )
        events.release_published(release)
    return release


def version_rollback(*, actor: Actor, version: PromptSetVersion) -> PromptSetVersion:
    """Roll forward to older content: a new version with ``version``'s prompts, approved because they were.

    The new version records who rolled back (``created_by``) and the version it copies (``rollback_of``), and
    is ready to publish. It has no reviewer or review time: nobody reviewed it, its content was approved as
    ``rollback_of`` (``prompts.rollback.approval_of`` finds that review). The set's status and its prompts
    being edited are left as they are.
    """
    prompt_set = version.prompt_set
    project = prompt_set.project
    require(actor, project.organisation, Capability.PUBLISH, what=f"version {version}")
    with transaction.atomic():
        prompt_set = _lock_set(prompt_set)
        source = PromptSetVersion.objects.select_related("reviewed_by").get(pk=version.pk)
        if source.state != VersionState.APPROVED:
            raise ApplicationError(
                f"Version {source.number} of {prompt_set.slug} was never approved, so it cannot be rolled back to."
            )
        newest = prompt_set.versions.aggregate(n=Max("number"))["n"] or 0
        if source.number == newest:
            raise Conflict(f"Version {source.number} is already the newest version of {prompt_set.slug}.")
        try:
            with transaction.atomic():
                rollback = PromptSetVersion.objects.create(
                    prompt_set=prompt_set,
                    number=newest + 1,
                    snapshot=source.snapshot,
                    digest=source.digest,
                    state=VersionState.APPROVED,
                    created_by=_user(actor),
                    rollback_of=source,
                    provenance=source.provenance,
                )
        except IntegrityError:  # pragma: no cover - the set lock makes this unreachable; kept as a guard
            raise Conflict(f"Another version of {prompt_set.slug} was made at the same moment; try again.") from None
        audit_record(
            actor=actor,
            action="version.rollback",
            obj=rollback,
            organisation=project.organisation,
            project=project,
            data={
                "set": prompt_set.slug,
                "version": rollback.number,
                "rollback_of": source.number,
                "digest": source.digest,
            },
        )
    return rollback


# Helpers ---------------------------------------------------------------------------------------------------


def _user(actor: Actor) -> Any:
    """The user to store in a foreign key: ``None`` for the console's SystemActor."""
    return actor if getattr(actor, "pk", None) is not None else None


def _user_id(actor: Actor) -> int | None:
    return getattr(actor, "pk", None)


def _username(user: Any) -> str:
    return user.get_username() if user is not None else "someone"


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "an unknown time"


def _lock_set(prompt_set: PromptSet) -> PromptSet:
    return (
        PromptSet.objects.select_for_update(of=("self",))
        .select_related("project__organisation", "updated_by")
        .get(pk=prompt_set.pk)
    )


def _lock_prompt(prompt: Prompt) -> Prompt:
    try:
        return Prompt.objects.select_for_update(of=("self",)).select_related("updated_by").get(pk=prompt.pk)
    except Prompt.DoesNotExist:
        deleted = AuditEvent.objects.filter(
            object_type="prompts.prompt", object_id=str(prompt.pk), action="prompt.delete"
        ).first()
        who = f" by {deleted.actor_label} at {_when(deleted.created_at)}" if deleted else ""
        raise Conflict(f"The prompt {prompt.key} was deleted{who} since you opened it; nothing was saved.") from None


def _require_editable(prompt_set: PromptSet) -> None:
    if prompt_set.archived_at is not None:
        raise Conflict(f"{prompt_set.slug} is archived; restore it to edit its prompts.")
    if prompt_set.status != SetStatus.LIVE:
        hint = "request changes or wait for the review" if prompt_set.status == SetStatus.REVIEW else "reopen it"
        raise Conflict(f"{prompt_set.slug} is {_status_words(prompt_set)}; prompts can be edited only while it is LIVE "
                       f"({hint} first).")


def _require_revision(current: Prompt, base_revision: int) -> None:
    if current.revision != base_revision:
        raise Conflict(
            f"{current.key} was changed by {_username(current.updated_by)} at {_when(current.updated_at)} after you "
            f"opened it (you edited revision {base_revision}, it is now at revision {current.revision}). Nothing "
            "was saved: copy your text, reload, and apply your change again.",
            {
                "revision": current.revision,
                "changed_by": _username(current.updated_by),
                "changed_at": current.updated_at.isoformat() if current.updated_at else None,
            },
        )


def _touch_set(prompt_set: PromptSet, actor: Actor, fields: list[str] | None = None) -> None:
    """Bump the set's revision (every change to a set or its prompts moves it on)."""
    prompt_set.revision += 1
    prompt_set.updated_by = _user(actor)
    prompt_set.save(update_fields=[*(fields or []), "revision", "updated_by", "updated_at"])


def _status_words(prompt_set: PromptSet) -> str:
    return {SetStatus.LIVE: "LIVE", SetStatus.REVIEW: "in REVIEW", SetStatus.LOCKED: "LOCKED"}[prompt_set.status]


def _already_reviewed(version: PromptSetVersion) -> str:
    version.refresh_from_db()
    who = _username(version.reviewed_by)
    if version.state == VersionState.APPROVED:
        return f"Version {version.number} was already approved by {who} at {_when(version.reviewed_at)}."
    if version.state == VersionState.REJECTED:
        return f"Version {version.number} already had changes requested by {who} at {_when(version.reviewed_at)}."
    return f"Version {version.number} is not in review."


def _tests_summary(results: dict[str, Any]) -> dict[str, Any]:
    return {"passed": results["passed"], "failed": results["failed"], "failing": failing_samples(results)}


def _comment(comment: Any, *, required: bool) -> str:
    comment = (comment or "").strip() if isinstance(comment, str | type(None)) else None
    if comment is None:
        raise ApplicationError("The comment must be text.")
    if required and not comment:
        raise ApplicationError("Say what should change: a comment is required when requesting changes.")
    if len(comment) > MAX_COMMENT_CHARS:
        raise ApplicationError(f"The comment is longer than {MAX_COMMENT_CHARS} characters.")
    return comment

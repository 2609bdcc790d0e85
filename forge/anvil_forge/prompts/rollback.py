"""Rolling an environment back to a version that was live there before, in one step that says what it does.

A rollback never moves a release backwards (LIVE instances never step back): it makes a new version with the
older version's content (:func:`~anvil_forge.prompts.services.version_rollback`) and publishes it, in one
transaction, audited as both steps are (``version.rollback`` then ``release.publish``).

The new version is approved because its content was: it records who rolled back (``created_by``) and which
approved version it copies (``rollback_of``), and has no reviewer or review time of its own, since nobody
reviewed it. :func:`approval_of` finds the review that approved the content, for pages that say who approved
what and when.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction

from anvil_forge.accounts.permissions import Actor, Capability, require
from anvil_forge.core.exceptions import ApplicationError, NotFound
from anvil_forge.distribution.models import Release
from anvil_forge.prompts.models import Environment, PromptSet, PromptSetVersion, VersionState

__all__ = [
    "Approval",
    "approval_of",
    "rollback_environment",
    "rollback_refusal",
    "rollback_target_ids",
    "rollback_targets",
]

# A rollback of a rollback of ... : the chain is short in practice; the bound only guards against a cycle.
MAX_CHAIN = 100


@dataclass(frozen=True)
class Approval:
    """The review that approved a version's content: ``version`` itself, or the version a rollback copies."""

    version: PromptSetVersion
    reviewed_by: Any
    reviewed_at: datetime | None
    is_own: bool  # the version's own review (False: the review of the version a rollback copies)


def approval_of(version: PromptSetVersion) -> Approval | None:
    """Who approved ``version``'s content and when: its own review, or (for a rollback) the copied version's.

    ``None`` for a version that is not approved.
    """
    if version.state != VersionState.APPROVED:
        return None
    current = version
    for _ in range(MAX_CHAIN):
        if current.rollback_of_id is None or current.reviewed_at is not None:
            break
        source = current.rollback_of
        if source is None:
            break
        current = source
    return Approval(
        version=current,
        reviewed_by=current.reviewed_by,
        reviewed_at=current.reviewed_at,
        is_own=current.pk == version.pk,
    )


def rollback_targets(
    *, prompt_set: PromptSet, environment: Environment, limit: int | None = None
) -> list[PromptSetVersion]:
    """The versions ``environment`` can be rolled back to, most recently live first (at most ``limit``).

    Approved versions that were live in ``environment`` before and whose content is not the one live there now.
    Their snapshots are not loaded (metadata only).
    """
    ids = rollback_target_ids(prompt_set=prompt_set, environment=environment)[:limit]
    versions = (
        PromptSetVersion.objects.filter(pk__in=ids)
        .select_related("created_by", "reviewed_by", "rollback_of")
        .defer("snapshot", "rollback_of__snapshot")
    )
    by_id = {version.pk: version for version in versions}
    return [by_id[pk] for pk in ids if pk in by_id]


def rollback_target_ids(*, prompt_set: PromptSet, environment: Environment) -> list[int]:
    """The ids of :func:`rollback_targets`, from one narrow read of the releases (a page may list 1,000)."""
    released = Release.objects.filter(environment=environment, prompt_set=prompt_set).order_by("-id")
    # State and digest from their index (see PromptSetVersion.Meta), joined here.
    versions = {
        pk: (state, digest)
        for pk, state, digest in PromptSetVersion.objects.filter(prompt_set=prompt_set)
        .order_by()
        .values_list("id", "state", "digest")
    }
    rows = [(pk, *versions[pk]) for pk in released.values_list("version_id", flat=True) if pk in versions]
    ids: list[int] = []
    seen: set[int] = set()
    current_digest = None
    for version_id, state, digest in rows:
        if current_digest is None:
            current_digest = digest
            seen.add(version_id)
            continue
        if version_id in seen:
            continue
        seen.add(version_id)
        if state == VersionState.APPROVED and digest != current_digest:
            ids.append(version_id)
    return ids


def rollback_environment(*, actor: Actor, prompt_set: PromptSet, number: int, environment: Environment) -> Release:
    """Roll ``environment`` back to version ``number`` of ``prompt_set``: make a new version with its content,
    approved because that content was, and publish it there. Returns the new release.

    Refused unless ``actor`` may publish and version ``number`` was live in ``environment`` before (and its
    content is not the one live there now).
    """
    from anvil_forge.prompts import services

    project = prompt_set.project
    require(actor, project.organisation, Capability.PUBLISH, what=f"prompt set {prompt_set}")
    if environment.project_id != project.pk:
        raise NotFound(f"{project} has no environment {environment.slug}.")
    with transaction.atomic():
        source = PromptSetVersion.objects.filter(prompt_set=prompt_set, number=number).first()
        if source is None:
            raise NotFound(f"{prompt_set.slug} has no version {number}.")
        if source.pk not in rollback_target_ids(prompt_set=prompt_set, environment=environment):
            raise ApplicationError(rollback_refusal(prompt_set, source, environment))
        made = services.version_rollback(actor=actor, version=source)
        return services.version_publish(actor=actor, version=made, environment=environment)


def rollback_refusal(prompt_set: PromptSet, source: PromptSetVersion, environment: Environment) -> str:
    """Why ``environment`` cannot be rolled back to ``source``, in a sentence."""
    current = (
        Release.objects.filter(environment=environment, prompt_set=prompt_set)
        .select_related("version")
        .order_by("-id")
        .first()
    )
    if current is not None and current.version.digest == source.digest:
        return (
            f"Version {source.number}'s content is what {environment.slug} runs now (version "
            f"{current.version.number}); there is nothing to roll back."
        )
    if source.state != VersionState.APPROVED:
        return f"Version {source.number} of {prompt_set.slug} was never approved, so it cannot be rolled back to."
    return (
        f"Version {source.number} of {prompt_set.slug} was never live in {environment.slug}; a rollback goes back "
        "only to a version that was. Publish a newer version instead."
    )

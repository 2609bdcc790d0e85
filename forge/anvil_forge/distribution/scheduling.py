"""Scheduled publishing: publish a version to an environment at a chosen time (UTC).

:func:`release_schedule` records a :class:`~anvil_forge.distribution.models.ScheduledRelease` after the same
checks as a publish (the ``publish`` capability; production takes only approved versions; never a version
older than the live one). :func:`scheduled_releases_fire` is the scheduler's tick (``distribution.scheduler``,
every second in each FORGE process): it claims each due pending row and publishes it through the normal
publish service (``prompts.services.version_publish``) as the user who scheduled it, which checks everything
again. A version that is no longer publishable at that time fails, with the reason recorded and audited.

Exactly once, with several FORGE processes: the row is claimed with ``SELECT ... FOR UPDATE SKIP LOCKED`` on
PostgreSQL and published in the same transaction, so another process skips it while it is being published and
sees it published afterwards. SQLite has no row locks (Django ignores ``select_for_update`` there): the embedded
FORGE is one process, and the claim is also a conditional ``UPDATE ... WHERE state = 'pending'`` inside the
transaction, so even a second process on the same file could not publish a row twice (SQLite serialises
writers, and the loser's update matches no row).

A FORGE that was down at the time publishes the due rows when it starts again: ``late_by`` and the audit's
``late_seconds`` say by how much, when it is more than :data:`LATE_AFTER`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from anvil_forge.accounts.permissions import Capability, require
from anvil_forge.audit.services import audit_record
from anvil_forge.core.exceptions import ApplicationError, Conflict, NotFound
from anvil_forge.distribution.models import Release, ScheduledRelease, ScheduleState
from anvil_forge.prompts.models import Environment, PromptSet, PromptSetVersion, VersionState

logger = logging.getLogger(__name__)

LATE_AFTER = timedelta(seconds=5)  # later than this after its time, a scheduled release says it was late
MAX_AHEAD = timedelta(days=366)
FIRE_BATCH = 50  # rows published per tick at most; the rest wait a second


def release_schedule(
    *, actor: Any, version: PromptSetVersion, environment: Environment, at: datetime, now: datetime | None = None
) -> ScheduledRelease:
    """Schedule ``version`` to be published to ``environment`` at ``at`` (an aware datetime, kept in UTC).

    The same role and rules as publishing now; they are checked again when the time comes.
    """
    prompt_set = version.prompt_set
    project = prompt_set.project
    require(actor, project.organisation, Capability.PUBLISH, what=f"version {version}")
    if environment.project_id != project.pk:
        raise NotFound(f"{project} has no environment {environment.slug}.")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ApplicationError("The time needs a time zone (or UTC offset).", {"field": "at"})
    at = at.astimezone(UTC)
    now = now or timezone.now()
    if at <= now:
        raise ApplicationError(
            f"{at:%Y-%m-%d %H:%M:%S} UTC has passed; choose a time in the future, or publish now.", {"field": "at"}
        )
    if at - now > MAX_AHEAD:
        raise ApplicationError(f"A release can be scheduled at most {MAX_AHEAD.days} days ahead.", {"field": "at"})
    with transaction.atomic():
        environment = Environment.objects.select_for_update().get(pk=environment.pk)
        version = PromptSetVersion.objects.select_related("prompt_set").get(pk=version.pk)
        _check_publishable(version, environment)
        duplicate = ScheduledRelease.objects.filter(
            version=version, environment=environment, state=ScheduleState.PENDING
        ).first()
        if duplicate is not None:
            raise Conflict(
                f"Version {version.number} of {prompt_set.slug} is already scheduled for {environment.slug} at "
                f"{duplicate.at:%Y-%m-%d %H:%M:%S} UTC; cancel that first to choose another time."
            )
        scheduled = ScheduledRelease.objects.create(
            environment=environment,
            prompt_set_id=prompt_set.pk,
            version=version,
            at=at,
            created_by=_user_or_none(actor),
        )
        audit_record(
            actor=actor,
            action="release.schedule",
            obj=scheduled,
            organisation=project.organisation,
            project=project,
            data={
                "set": prompt_set.slug,
                "environment": environment.slug,
                "version": version.number,
                "at": at.isoformat(),
            },
        )
    return scheduled


def scheduled_release_cancel(*, actor: Any, scheduled: ScheduledRelease) -> ScheduledRelease:
    """Cancel a pending scheduled release (the ``publish`` capability, as to schedule one)."""
    project = scheduled.prompt_set.project
    require(actor, project.organisation, Capability.PUBLISH, what=f"scheduled release {scheduled.pk}")
    with transaction.atomic():
        locked = ScheduledRelease.objects.select_for_update().get(pk=scheduled.pk)  # waits for a firing one
        if locked.state != ScheduleState.PENDING:
            raise Conflict(f"This scheduled release is {locked.get_state_display().lower()}; it cannot be cancelled.")
        locked.state = ScheduleState.CANCELLED
        locked.cancelled_by = _user_or_none(actor)
        locked.cancelled_at = timezone.now()
        locked.save(update_fields=["state", "cancelled_by", "cancelled_at"])
        audit_record(
            actor=actor,
            action="release.schedule_cancel",
            obj=locked,
            organisation=project.organisation,
            project=project,
            data={
                "set": scheduled.prompt_set.slug,
                "environment": scheduled.environment.slug,
                "version": scheduled.version.number,
                "at": locked.at.isoformat(),
            },
        )
    return locked


def scheduled_releases_fire(*, now: datetime | None = None, limit: int = FIRE_BATCH) -> list[ScheduledRelease]:
    """Publish the pending scheduled releases due by ``now`` (default: now); return those this call handled.

    Each row in its own transaction: claimed (skipping rows another process holds), published or failed, and
    audited together. A database error leaves the row pending for the next tick.
    """
    handled: list[ScheduledRelease] = []
    for _ in range(limit):
        row = _fire_next(now=now or timezone.now())
        if row is None:
            break
        handled.append(row)
    return handled


def scheduled_releases_for(*, actor: Any, prompt_set: PromptSet, recent: int = 10) -> list[ScheduledRelease]:
    """The set's pending scheduled releases (soonest first), then its ``recent`` newest finished ones."""
    require(actor, prompt_set.project.organisation, Capability.VIEW, what=f"prompt set {prompt_set}")
    rows: QuerySet[ScheduledRelease] = ScheduledRelease.objects.filter(prompt_set=prompt_set).select_related(
        "version", "environment", "created_by", "cancelled_by", "release"
    )
    pending = list(rows.filter(state=ScheduleState.PENDING).order_by("at", "id"))
    done = list(rows.exclude(state=ScheduleState.PENDING).order_by("-at", "-id")[:recent])
    return pending + done


def scheduled_release_get(*, actor: Any, prompt_set: PromptSet, scheduled_id: int) -> ScheduledRelease:
    require(actor, prompt_set.project.organisation, Capability.VIEW, what=f"prompt set {prompt_set}")
    row = (
        ScheduledRelease.objects.filter(pk=scheduled_id, prompt_set=prompt_set)
        .select_related("version", "environment", "prompt_set__project__organisation")
        .first()
    )
    if row is None:
        raise NotFound("No such scheduled release.")
    return row


# -- firing ----------------------------------------------------------------------------------------------


def _fire_next(*, now: datetime) -> ScheduledRelease | None:
    from anvil_forge.prompts.services import version_publish

    with transaction.atomic():
        row = (
            ScheduledRelease.objects.select_for_update(skip_locked=True)
            .filter(state=ScheduleState.PENDING, at__lte=now)
            .order_by("at", "id")
            .first()
        )
        if row is None:
            return None
        # The claim: on PostgreSQL the row lock already makes it ours; on SQLite this is what does.
        if not ScheduledRelease.objects.filter(pk=row.pk, state=ScheduleState.PENDING).update(
            state=ScheduleState.PUBLISHED
        ):
            return None
        row = ScheduledRelease.objects.select_related(
            "version__prompt_set__project__organisation", "environment", "created_by"
        ).get(pk=row.pk)
        actor = row.created_by
        fired_at = timezone.now()
        late = max(fired_at - row.at, timedelta(0))
        extra: dict[str, Any] = {"scheduled": True, "scheduled_release": row.pk, "scheduled_at": row.at.isoformat()}
        if late > LATE_AFTER:
            extra["late_seconds"] = round(late.total_seconds(), 1)
        try:
            if actor is None or not actor.is_active:
                raise ApplicationError("The user who scheduled it no longer exists or is deactivated.")
            with transaction.atomic():
                release: Release = version_publish(
                    actor=actor, version=row.version, environment=row.environment, audit_extra=extra
                )
        except ApplicationError as exc:
            row.state = ScheduleState.FAILED
            row.failure_reason = exc.message
            row.late_by = late
            row.save(update_fields=["state", "failure_reason", "late_by"])
            project = row.version.prompt_set.project
            audit_record(
                actor=actor if actor is not None and actor.is_active else None,
                actor_label=None if actor is not None and actor.is_active else "scheduler",
                action="release.schedule_fail",
                obj=row,
                organisation=project.organisation,
                project=project,
                data={
                    "set": row.version.prompt_set.slug,
                    "environment": row.environment.slug,
                    "version": row.version.number,
                    "reason": exc.message,
                    **{key: value for key, value in extra.items() if key != "scheduled_release"},
                },
            )
            logger.warning("scheduled release %s failed: %s", row.pk, exc.message)
            return row
        row.state = ScheduleState.PUBLISHED
        row.release = release
        row.published_at = release.published_at
        row.late_by = late
        row.save(update_fields=["state", "release", "published_at", "late_by"])
        if late > LATE_AFTER:
            logger.warning(
                "scheduled release %s (%s) published %.1f s late: the FORGE was not running at its time",
                row.pk,
                row,
                late.total_seconds(),
            )
        else:
            logger.info("scheduled release %s (%s) published", row.pk, row)
        return row


def is_late(row: ScheduledRelease) -> bool:
    return row.late_by is not None and row.late_by > LATE_AFTER


def _check_publishable(version: PromptSetVersion, environment: Environment) -> None:
    """The publish service's refusals, said when scheduling (the publish checks them again at the time)."""
    slug = version.prompt_set.slug
    if version.prompt_set.archived_at is not None:
        raise ApplicationError(f"{slug} is archived; restore it before publishing.")
    if version.state == VersionState.REJECTED:
        raise ApplicationError(f"Version {version.number} of {slug} had changes requested; it cannot be published.")
    if version.state == VersionState.IN_REVIEW and not environment.accepts_review_versions:
        if environment.is_production:
            raise ApplicationError(
                f"Version {version.number} of {slug} is still in review; production takes only approved versions."
            )
        raise ApplicationError(
            f"Version {version.number} of {slug} is still in review, and {environment.slug} takes only approved "
            "versions."
        )
    current = (
        Release.objects.filter(environment=environment, prompt_set_id=version.prompt_set_id)
        .select_related("version")
        .order_by("-id")
        .first()
    )
    if current is not None and current.version.number >= version.number:
        raise Conflict(
            f"Version {current.version.number} of {slug} is live in {environment.slug}; version {version.number} "
            "is not newer, and LIVE instances never step back."
        )


def _user_or_none(actor: Any) -> Any:
    return actor if getattr(actor, "pk", None) is not None else None

"""Scheduled publishing: the rules when scheduling, cancelling, and firing (on time, late, or failing)."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import datetime, timedelta

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from anvil_forge.audit.models import AuditEvent
from anvil_forge.core.exceptions import ApplicationError, Conflict, PermissionDenied
from anvil_forge.distribution.models import Release, ScheduledRelease, ScheduleState
from anvil_forge.distribution.scheduler import Scheduler
from anvil_forge.distribution.scheduling import (
    release_schedule,
    scheduled_release_cancel,
    scheduled_releases_fire,
    scheduled_releases_for,
)
from anvil_forge.prompts import services
from forge.tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def versions(team, prompt_set):
    """Version 1 live in production, version 2 approved and waiting."""
    v1 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v1, actor=team.editor)
    v2 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    return v1, v2


def _soon(seconds: float = 60) -> datetime:
    return timezone.now() + timedelta(seconds=seconds)


def _due(team, project, version, *, late_by: float = 0) -> ScheduledRelease:
    """A pending scheduled release whose time is ``late_by`` seconds ago (scheduled before that)."""
    at = timezone.now() - timedelta(seconds=late_by)
    return release_schedule(
        actor=team.editor,
        version=version,
        environment=factories.environment(project),
        at=at,
        now=at - timedelta(minutes=1),
    )


def test_scheduling_an_approved_version_records_a_pending_row_and_an_audit_event(team, project, versions):
    _, v2 = versions
    at = timezone.now().replace(microsecond=0) + timedelta(days=30)

    scheduled = release_schedule(actor=team.editor, version=v2, environment=factories.environment(project), at=at)

    assert (scheduled.state, scheduled.at, scheduled.created_by) == (ScheduleState.PENDING, at, team.editor)
    event = AuditEvent.objects.get(action="release.schedule")
    assert event.actor == team.editor
    assert event.data == {"set": v2.prompt_set.slug, "environment": "production", "version": 2, "at": at.isoformat()}
    assert scheduled_releases_for(actor=team.viewer, prompt_set=v2.prompt_set) == [scheduled]


def test_scheduling_follows_the_publish_rules(team, project, prompt_set, versions):
    _, v2 = versions
    production = factories.environment(project)
    with pytest.raises(PermissionDenied):
        release_schedule(actor=team.reviewer, version=v2, environment=production, at=_soon())
    with pytest.raises(ApplicationError, match="in the future"):
        release_schedule(actor=team.editor, version=v2, environment=production, at=timezone.now() - timedelta(1))
    with pytest.raises(ApplicationError, match="time zone"):
        release_schedule(actor=team.editor, version=v2, environment=production, at=datetime(2031, 1, 1))
    with pytest.raises(Conflict, match="never step back"):
        release_schedule(actor=team.editor, version=versions[0], environment=production, at=_soon())
    release_schedule(actor=team.editor, version=v2, environment=production, at=_soon())
    with pytest.raises(Conflict, match="already scheduled"):
        release_schedule(actor=team.editor, version=v2, environment=production, at=_soon(120))
    services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    v3 = factories.make_submitted_version(prompt_set, author=team.editor)
    with pytest.raises(ApplicationError, match="production takes only approved versions"):
        release_schedule(actor=team.editor, version=v3, environment=production, at=_soon())
    assert ScheduledRelease.objects.count() == 1


def test_cancelling_a_pending_release_is_audited_and_only_once(team, project, versions):
    scheduled = release_schedule(
        actor=team.editor, version=versions[1], environment=factories.environment(project), at=_soon()
    )
    with pytest.raises(PermissionDenied):
        scheduled_release_cancel(actor=team.viewer, scheduled=scheduled)

    cancelled = scheduled_release_cancel(actor=team.admin, scheduled=scheduled)

    assert (cancelled.state, cancelled.cancelled_by) == (ScheduleState.CANCELLED, team.admin)
    assert AuditEvent.objects.get(action="release.schedule_cancel").actor == team.admin
    with pytest.raises(Conflict, match="cancelled"):
        scheduled_release_cancel(actor=team.admin, scheduled=scheduled)
    assert scheduled_releases_fire(now=scheduled.at + timedelta(seconds=1)) == []
    assert Release.objects.count() == 1


def test_a_due_release_is_published_once_as_the_scheduling_user(team, project, versions):
    scheduled = release_schedule(
        actor=team.editor, version=versions[1], environment=factories.environment(project), at=_soon(2)
    )
    assert scheduled_releases_fire() == []  # not due yet

    fired = scheduled_releases_fire(now=scheduled.at)

    assert [row.pk for row in fired] == [scheduled.pk]
    scheduled.refresh_from_db()
    release = Release.objects.order_by("-id").first()
    assert (scheduled.state, scheduled.release, release.version, release.published_by) == (
        ScheduleState.PUBLISHED,
        release,
        versions[1],
        team.editor,
    )
    event = AuditEvent.objects.get(action="release.publish", object_id=str(release.pk))
    assert event.actor == team.editor
    assert event.data["scheduled"] is True and "late_seconds" not in event.data
    assert scheduled_releases_fire(now=scheduled.at + timedelta(minutes=5)) == []
    assert Release.objects.count() == 2


def test_a_release_published_after_its_time_says_how_late(team, project, versions):
    scheduled = _due(team, project, versions[1], late_by=90)

    scheduled_releases_fire()

    scheduled.refresh_from_db()
    assert scheduled.state == ScheduleState.PUBLISHED
    assert 89 <= scheduled.late_by.total_seconds() < 120
    event = AuditEvent.objects.get(action="release.publish", object_id=str(scheduled.release_id))
    assert event.data["scheduled"] is True and 89 <= event.data["late_seconds"] < 120


def test_a_version_no_longer_publishable_at_its_time_fails_with_the_reason(team, project, versions):
    scheduled = _due(team, project, versions[1])
    factories.make_release(versions[1], actor=team.editor)  # someone published it by hand meanwhile

    scheduled_releases_fire()

    scheduled.refresh_from_db()
    assert scheduled.state == ScheduleState.FAILED
    assert "already live" in scheduled.failure_reason
    event = AuditEvent.objects.get(action="release.schedule_fail")
    assert event.actor == team.editor and "already live" in event.data["reason"]


def test_a_scheduling_user_who_lost_the_publish_role_makes_it_fail(team, project, versions):
    scheduled = _due(team, project, versions[1])
    membership = factories.membership(team.editor, team.organisation)
    membership.role = "viewer"
    membership.save()

    scheduled_releases_fire()

    scheduled.refresh_from_db()
    assert scheduled.state == ScheduleState.FAILED and scheduled.failure_reason
    assert Release.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_scheduler_thread_publishes_a_due_release_within_its_interval(team, project, versions):
    scheduled = release_schedule(
        actor=team.editor, version=versions[1], environment=factories.environment(project), at=_soon(0.5)
    )
    scheduler = Scheduler()
    scheduler.start(interval=0.1)
    try:
        assert scheduler.running
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            # The test database is SQLite in memory, shared by threads that lock whole tables.
            with contextlib.suppress(OperationalError):
                scheduled.refresh_from_db()
            if scheduled.state != ScheduleState.PENDING:
                break
            time.sleep(0.05)
    finally:
        scheduler.stop()
    assert not scheduler.running
    assert scheduled.state == ScheduleState.PUBLISHED
    assert scheduled.published_at >= scheduled.at


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_firing_at_once_on_postgresql_publish_once(team, project, versions):
    if connection.vendor != "postgresql":
        pytest.skip("row locks (FOR UPDATE SKIP LOCKED) are PostgreSQL's; a SQLite FORGE is one process")
    scheduled = _due(team, project, versions[1])
    barrier = threading.Barrier(4)
    handled: list[int] = []

    def fire() -> None:
        try:
            barrier.wait(timeout=5)
            handled.append(len(scheduled_releases_fire()))
        finally:
            connection.close()

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert sorted(handled) == [0, 0, 0, 1]
    assert Release.objects.filter(version=versions[1]).count() == 1
    assert AuditEvent.objects.filter(action="release.publish", data__scheduled=True).count() == 1
    scheduled.refresh_from_db()
    assert scheduled.state == ScheduleState.PUBLISHED

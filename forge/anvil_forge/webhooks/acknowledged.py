"""``release.acknowledged``: every instance that was running when a release was published runs it now.

The check-in writer records the acknowledgements of single instances (``release.acknowledge``, in
``distribution.services``); after its batch commits it hands the ids of the releases concerned to
:func:`check_after_commit` (a set add and a wake-up, nothing more), and the webhooks drainer thread
(``webhooks.drain``) runs :func:`release_check` for each of them, coalesced: a flood of acknowledgements of one
release after a publish costs at most one check a second (:data:`CHECK_INTERVAL`), or fewer in a large
environment (a check that took *d* seconds waits ten times *d* before the next: at most a tenth of the thread's
time), never a query in the writer.
Every five minutes the thread also sweeps the day's releases not acknowledged yet, for the instance that was the
last one behind and stopped without a goodbye: it ages out without an acknowledgement that would prompt a check.

A release is *acknowledged* when, of the environment's instances first seen before it was published, those that
follow its set and are still live have each applied it (acknowledged it, or all their live processes run it),
and at least one has. An instance that went offline since does not hold it up; one that refuses it (FROZEN, or
pinned) does not either, and is counted in ``data.refusing`` (such an instance will not take the release until
its host changes its mind). A release superseded before that moment never gets the event.

Exactly once, even with several FORGE processes on one database: the event is recorded in the transaction that
inserts the release's :class:`ReleaseAcknowledged` row, which is unique per release; the process that loses the
race gets an ``IntegrityError`` and records nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from anvil_forge.audit.models import AuditEvent
from anvil_forge.audit.services import audit_record

logger = logging.getLogger("anvil_forge.webhooks")

ACTION = "release.acknowledged"

_lock = threading.Lock()
_pending: set[int] = set()
_done: set[int] = set()  # releases known to be acknowledged already (this process): no query for them again
_last_sweep = 0.0  # time.monotonic() of the last sweep of the day's releases
SWEEP_SECONDS = 300.0
CHECK_INTERVAL = 1.0  # one release is checked at most this often (a flood of acknowledgements after a publish)
CHECK_SHARE = 10.0  # ...and at most once per this many times its last check's duration
_due_at: dict[int, float] = {}  # release id -> time.monotonic() from which it may be checked again
SWEEP_WINDOW = timedelta(days=1)
SWEEP_RELEASES = 200


def check_after_commit(release_ids: list[int]) -> None:
    """Ask for :func:`release_check` of ``release_ids`` once the current transaction commits (in the background)."""
    ids = [pk for pk in release_ids if pk not in _done]
    if ids:
        transaction.on_commit(lambda: note(ids))


def note(release_ids: list[int]) -> None:
    """Queue ``release_ids`` for the drainer thread and wake it."""
    from anvil_forge.webhooks import drain

    with _lock:
        _pending.update(release_ids)
    drain.wake()


def check_pending() -> int:
    """Check every queued release (the drainer's call), and every :data:`SWEEP_SECONDS` the day's releases not
    acknowledged yet (an instance that was the last one behind and stopped without a goodbye ages out with no
    acknowledgement to prompt a check); how many became acknowledged."""
    global _last_sweep
    with _lock:
        ids = set(_pending)
        _pending.clear()
    if time.monotonic() - _last_sweep >= SWEEP_SECONDS:
        _last_sweep = time.monotonic()
        ids.update(_unacknowledged_recent())
    fired = 0
    now = time.monotonic()
    if len(_due_at) > 1000:  # forget the checks of long ago
        for release_id in [pk for pk, at in _due_at.items() if now - at > 60]:
            del _due_at[release_id]
    for release_id in sorted(ids):
        if now < _due_at.get(release_id, now):
            with _lock:
                _pending.add(release_id)  # checked a moment ago: once more when it is due
            continue
        started = time.monotonic()
        try:
            fired += release_check(release_id) is not None
        except Exception:  # logged; the next acknowledgement of the release asks again
            logger.exception("webhooks: checking whether release %s is acknowledged failed", release_id)
        ended = time.monotonic()
        _due_at[release_id] = ended + max(CHECK_INTERVAL, CHECK_SHARE * (ended - started))
    return fired


def next_check_in() -> float | None:
    """Seconds until a release put off (see :data:`CHECK_INTERVAL`) is due (the drainer waits no longer), or
    ``None``."""
    with _lock:
        waiting = list(_pending)
    if not waiting:
        return None
    now = time.monotonic()
    return max(0.0, min(_due_at.get(pk, now) for pk in waiting) - now)


def _unacknowledged_recent(*, now: datetime | None = None) -> list[int]:
    """The newest :data:`SWEEP_RELEASES` releases published in the last :data:`SWEEP_WINDOW` and not acknowledged by
    every instance yet (read by primary key: releases only grow)."""
    from anvil_forge.distribution.models import Release
    from anvil_forge.webhooks.models import ReleaseAcknowledged

    since = (now or timezone.now()) - SWEEP_WINDOW
    recent = [
        pk
        for pk, published_at in Release.objects.order_by("-id").values_list("pk", "published_at")[:SWEEP_RELEASES]
        if published_at >= since and pk not in _done
    ]
    done = set(ReleaseAcknowledged.objects.filter(release_id__in=recent).values_list("release_id", flat=True))
    _done.update(done)
    return [pk for pk in recent if pk not in done]


def release_check(release_id: int, *, now: datetime | None = None) -> AuditEvent | None:
    """Record ``release.acknowledged`` for the release if every instance it waits for has applied it now (see
    the module's description); the audit event, or ``None`` (not yet, not current, or recorded before)."""
    from anvil_forge.distribution.models import LiveInstance, Release
    from anvil_forge.distribution.selectors import acknowledgement_ids, current_release_ids, set_standings
    from anvil_forge.webhooks.models import ReleaseAcknowledged

    if release_id in _done:
        return None
    if ReleaseAcknowledged.objects.filter(release_id=release_id).exists():
        _done.add(release_id)
        return None
    now = now or timezone.now()
    release = (
        Release.objects.select_related("environment", "prompt_set__project__organisation", "version")
        .filter(pk=release_id)
        .first()
    )
    if release is None or release.pk not in set(current_release_ids(environment_id=release.environment_id)):
        return None
    slug, number = release.prompt_set.slug, release.version.number
    instances = LiveInstance.objects.filter(
        environment_id=release.environment_id, first_seen_at__lte=release.published_at
    )
    standings = set_standings(instances, slug=slug, numbers={release.environment_id: number}, now=now)
    if not standings:
        return None
    acks = acknowledgement_ids(release=release)
    instance_ids = dict(instances.filter(pk__in=list(standings)).values_list("pk", "instance_id"))
    counts = {"applied": 0, "refusing": 0, "offline": 0}
    for pk, standing in standings.items():
        if instance_ids.get(pk) in acks or standing.standing == "running":
            counts["applied"] += 1
        elif standing.standing == "offline":
            counts["offline"] += 1
        elif standing.standing in ("pinned", "frozen"):
            counts["refusing"] += 1
        else:
            return None  # one still behind: not yet
    if not counts["applied"]:
        return None
    project = release.prompt_set.project
    try:
        with transaction.atomic():
            ReleaseAcknowledged.objects.create(release=release, acknowledged_at=now)
            event = audit_record(
                actor=None,
                actor_label="Anvil",
                action=ACTION,
                obj=release,
                organisation=project.organisation,
                project=project,
                data={
                    "set": slug,
                    "version": number,
                    "environment": release.environment.slug,
                    "published_at": release.published_at.isoformat().replace("+00:00", "Z"),
                    "seconds_since_publish": round((now - release.published_at).total_seconds(), 3),
                    "instances": counts["applied"],
                    "refusing": counts["refusing"],
                    "offline": counts["offline"],
                },
            )
    except IntegrityError:  # another process recorded it first
        _done.add(release_id)
        return None
    _done.add(release_id)
    return event

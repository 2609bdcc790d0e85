"""Writes of the health app: the ``signals`` of check-ins summed into :class:`ReleaseSignal` rows.

Called by the check-in writer's batch (one transaction, see
:func:`anvil_forge.distribution.services.instance_checkins_record`, the ASGI check-in route's) and by the single
check-in path (:func:`~anvil_forge.distribution.services.instance_checkin`, the Django view's), so both record the
same counters. A rollout's canary version is counted like a released one: these rows are what the rollout
evaluator judges. Each row
is added to with one ``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n`` (SQLite and PostgreSQL alike),
so check-ins of one instance recorded at once by two FORGE processes both count.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count

from anvil_forge.distribution.checkin import CheckIn
from anvil_forge.distribution.models import Release, Rollout
from anvil_forge.health.models import BUCKET_SECONDS, MAX_PROBLEMS_PER_INSTANCE, ReleaseProblem, ReleaseSignal

# (environment id, instance pk, check-in, when it arrived)
Item = tuple[int, int, CheckIn, datetime]
# Minute rows older than this are deleted (at most once per PRUNE_EVERY_SECONDS per FORGE process): the release
# page and rollouts look at recent health; an instance sends one row per release and minute it rendered in.
SIGNAL_RETENTION = timedelta(days=14)
PRUNE_EVERY_SECONDS = 3600.0
_last_prune = 0.0

_COUNTERS = (
    "renders",
    "missing_variables",
    "invalid_variable",
    "template_error",
    "render_limit",
    "fallbacks",
    "guarded",
    "outcomes_ok",
    "outcomes_failed",
)


def _bucket(moment: datetime) -> datetime:
    return moment - timedelta(seconds=moment.second % BUCKET_SECONDS, microseconds=moment.microsecond)


def _versions(items: list[Item]) -> dict[tuple[int, str, int], int]:
    """The version id of each reported (environment, set, number) that was released there or went to a canary
    there (a rollout, in any state: the last check-ins of a halted canary still count)."""
    environments = {environment_id for environment_id, _, checkin, _ in items if checkin.signals}
    slugs = {slug for _, _, checkin, _ in items for slug in checkin.signals}
    numbers = {n for _, _, checkin, _ in items for versions in checkin.signals.values() for n in versions}
    latest = max(now for *_, now in items)
    found: dict[tuple[int, str, int], int] = {}
    for model, when in ((Release, "published_at__lte"), (Rollout, "created_at__lte")):
        rows = model.objects.filter(
            environment_id__in=sorted(environments),
            prompt_set__slug__in=sorted(slugs),
            version__number__in=sorted(numbers),
            **{when: latest},
        ).values_list("environment_id", "prompt_set__slug", "version__number", "version_id")
        for environment_id, slug, number, version_id in rows:
            found[(environment_id, slug, number)] = version_id
    return found


def release_signals_record(*, items: list[Item]) -> int:
    """Add the ``signals`` of ``items`` to the counters of their versions; return the rows written.

    A version neither released nor on a canary in the instance's environment (a bootstrap file's, a pin never
    released here) is not recorded: there is no release or rollout page to show it on.
    """
    items = [item for item in items if item[2].signals]
    if not items:
        return 0
    versions_found = _versions(items)
    sums: dict[tuple[int, int, int, datetime], list[int]] = {}
    problems: dict[tuple[int, int, int, str, str, str], list[Any]] = {}
    for environment_id, instance_pk, checkin, now in items:
        for slug, versions in checkin.signals.items():
            for number, signals in versions.items():
                version_id = versions_found.get((environment_id, slug, number))
                if version_id is None:
                    continue
                values = (
                    signals.renders,
                    signals.errors.get("missing_variables", 0),
                    signals.errors.get("invalid_variable", 0),
                    signals.errors.get("template_error", 0),
                    signals.errors.get("render_limit", 0),
                    signals.fallbacks,
                    signals.guarded,
                    signals.outcomes_ok,
                    sum(signals.outcomes_failed.values()),
                )
                total = sums.setdefault((environment_id, version_id, instance_pk, _bucket(now)), [0] * len(_COUNTERS))
                for index, value in enumerate(values):
                    total[index] += value
                reported = [(p.prompt, p.kind, p.detail, p.count, p.guarded) for p in signals.problems]
                reported += [("", "outcome", kind, n, 0) for kind, n in signals.outcomes_failed.items()]
                for prompt, kind, detail, count, guarded in reported:
                    seen = problems.setdefault(
                        (environment_id, version_id, instance_pk, prompt, kind, detail), [0, 0, now, now]
                    )
                    seen[0] += count
                    seen[1] += guarded
                    seen[3] = max(seen[3], now)
    written = _upsert_signals(sums)
    if problems:
        written += _upsert_problems(problems)
    release_signals_prune(now=max(now for *_, now in items))
    return written


def release_signals_prune(*, now: datetime, force: bool = False) -> int:
    """Delete the minute rows older than :data:`SIGNAL_RETENTION` (once an hour per process unless ``force``)."""
    global _last_prune
    if not force and time.monotonic() - _last_prune < PRUNE_EVERY_SECONDS:
        return 0
    _last_prune = time.monotonic()
    deleted, _ = ReleaseSignal.objects.filter(bucket__lt=now - SIGNAL_RETENTION).delete()
    return deleted


def _upsert_signals(sums: dict[tuple[int, int, int, datetime], list[int]]) -> int:
    if not sums:
        return 0
    quote = connection.ops.quote_name
    table = quote(ReleaseSignal._meta.db_table)
    columns = ["environment_id", "version_id", "instance_id", "bucket", *_COUNTERS]
    updates = ", ".join(f"{quote(c)} = {table}.{quote(c)} + excluded.{quote(c)}" for c in _COUNTERS)
    sql = (
        f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) "  # noqa: S608 - names from the model
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({', '.join(quote(c) for c in columns[:4])}) DO UPDATE SET {updates}"
    )
    adapt = connection.ops.adapt_datetimefield_value
    rows = [
        (environment, version, instance, adapt(bucket), *values)
        for (environment, version, instance, bucket), values in sorted(sums.items())
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
    return len(rows)


def _upsert_problems(problems: dict[tuple[int, int, int, str, str, str], list[Any]]) -> int:
    """Add to the problem rows; a version and instance gain no new row past ``MAX_PROBLEMS_PER_INSTANCE``."""
    triples = {(environment, version, instance) for environment, version, instance, *_ in problems}
    scope = ReleaseProblem.objects.filter(
        environment_id__in={t[0] for t in triples},
        version_id__in={t[1] for t in triples},
        instance_id__in={t[2] for t in triples},
    )
    existing = set(scope.values_list("environment_id", "version_id", "instance_id", "prompt", "kind", "detail"))
    counts: dict[tuple[int, int, int], int] = {
        (row["environment_id"], row["version_id"], row["instance_id"]): row["n"]
        for row in scope.values("environment_id", "version_id", "instance_id").annotate(n=Count("id"))
    }
    quote = connection.ops.quote_name
    table = quote(ReleaseProblem._meta.db_table)
    columns = [
        "environment_id",
        "version_id",
        "instance_id",
        "prompt",
        "kind",
        "detail",
        "count",
        "guarded",
        "first_at",
        "last_at",
    ]
    sql = (
        f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) "  # noqa: S608 - names from the model
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({', '.join(quote(c) for c in columns[:6])}) DO UPDATE SET "
        f"{quote('count')} = {table}.{quote('count')} + excluded.{quote('count')}, "
        f"{quote('guarded')} = {table}.{quote('guarded')} + excluded.{quote('guarded')}, "
        f"{quote('last_at')} = excluded.{quote('last_at')}"
    )
    adapt = connection.ops.adapt_datetimefield_value
    rows = []
    for key, (count, guarded, first, last) in sorted(problems.items(), key=lambda kv: kv[0]):
        if key not in existing:
            owner = (key[0], key[1], key[2])
            if counts.get(owner, 0) >= MAX_PROBLEMS_PER_INSTANCE:
                continue
            counts[owner] = counts.get(owner, 0) + 1
        rows.append((*key, count, guarded, adapt(first), adapt(last)))
    if rows:
        with connection.cursor() as cursor:
            cursor.executemany(sql, rows)
    return len(rows)

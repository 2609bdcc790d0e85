"""Reads of the health app: what the instances reported of a release, for its page and for rollouts."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F, Q, Sum

from anvil_forge.distribution.models import Release
from anvil_forge.health.models import BUCKET_SECONDS, ReleaseProblem, ReleaseSignal

_SUMS = {
    "renders": Sum("renders"),
    "errors": Sum(F("missing_variables") + F("invalid_variable") + F("template_error") + F("render_limit")),
    "guarded": Sum("guarded"),
    "fallbacks": Sum("fallbacks"),
    "outcomes_ok": Sum("outcomes_ok"),
    "outcomes_failed": Sum("outcomes_failed"),
}


@dataclass(frozen=True, slots=True)
class Figures:
    """Counts summed over some instances: renders, render errors (every kind), renders the render guard
    answered with the previous text, fallbacks used, outcomes the hosts reported, and the instances counted."""

    renders: int = 0
    errors: int = 0
    guarded: int = 0
    fallbacks: int = 0
    outcomes_ok: int = 0
    outcomes_failed: int = 0
    instances: int = 0

    @property
    def rate(self) -> float | None:
        """Render errors per render (0.0-1.0); ``None`` without renders."""
        return self.errors / self.renders if self.renders else None

    @property
    def failure_rate(self) -> float | None:
        """Failed outcomes per reported outcome; ``None`` without outcomes."""
        reported = self.outcomes_ok + self.outcomes_failed
        return self.outcomes_failed / reported if reported else None


@dataclass(frozen=True, slots=True)
class ReleaseHealth:
    canary: Figures
    rest: Figures


def _since(since: datetime | None) -> Q:
    if since is None:
        return Q()
    start = since - timedelta(seconds=since.second % BUCKET_SECONDS, microseconds=since.microsecond)
    return Q(bucket__gte=start)


def _figures(rows: Any) -> Figures:
    totals = rows.aggregate(**_SUMS)
    instances = rows.values("instance_id").distinct().count()
    return Figures(**{key: int(value or 0) for key, value in totals.items()}, instances=instances)


def version_health(
    *,
    environment_id: int,
    version_id: int,
    canary: Collection[str] | None = None,
    rest_version_id: int | None = None,
    since: datetime | None = None,
) -> ReleaseHealth:
    """:func:`release_health` for a version in an environment, released or not (a rollout's canary version)."""
    window = _since(since)
    mine = ReleaseSignal.objects.filter(window, environment_id=environment_id, version_id=version_id)
    if canary is None:
        return ReleaseHealth(canary=_figures(mine), rest=Figures())
    ids = sorted(canary)
    canary_rows = mine.filter(instance__instance_id__in=ids)
    rest_rows = ReleaseSignal.objects.filter(
        window, environment_id=environment_id, version_id=rest_version_id or version_id
    ).exclude(instance__instance_id__in=ids)
    return ReleaseHealth(canary=_figures(canary_rows), rest=_figures(rest_rows))


def release_health(
    release: Release,
    *,
    canary: Collection[str] | None = None,
    rest_release: Release | None = None,
    since: datetime | None = None,
) -> ReleaseHealth:
    """Renders, errors and their rate for the canary and for the rest, from the instances' check-in signals.

    ``release_health(release, *, canary=None, rest_release=None, since=None) -> ReleaseHealth``:

    * ``canary``: the instance ids (``instance_id`` of the check-ins, the ``X-Anvil-Instance`` header) of the
      canary. ``ReleaseHealth.canary`` sums what those instances reported of ``release``'s version in its
      environment; ``None``: every instance that reported it (and ``rest`` is then empty).
    * ``rest_release``: the release whose counts the other instances give (``ReleaseHealth.rest``): for a
      rollout, the release live before (the previous version). Default: ``release`` itself.
    * ``since``: only counts recorded from the minute that contains ``since`` (e.g. when a stage started).

    Each side is a :class:`Figures`: ``renders``, ``errors`` (render errors of every kind), ``guarded``,
    ``fallbacks``, ``outcomes_ok``, ``outcomes_failed``, ``instances``, ``rate`` (errors per render, 0.0-1.0,
    ``None`` without renders) and ``failure_rate`` (failed outcomes per reported outcome). Counts arrive with
    the check-ins: at most one check-in interval (plus a second) behind the instances. The counts are kept per
    version and environment: a version released twice there shows the counts of both releases.
    """
    return version_health(
        environment_id=release.environment_id,
        version_id=release.version_id,
        canary=canary,
        rest_version_id=rest_release.version_id if rest_release is not None else None,
        since=since,
    )


def release_health_rows(
    *,
    environment: Any,
    prompt_set: Any,
    versions: Iterable[int],
    since: datetime | None = None,
    per_instance: bool = True,
) -> list[dict[str, Any]]:
    """Per instance and version of a set in an environment: ``{"instance_id", "version", "renders", "errors",
    "guarded", "fallbacks", "outcomes_ok", "outcomes_failed"}`` (``per_instance=False``: per version only, no
    ``instance_id``), summed, from the minute that contains ``since`` (canary versions included)."""
    keys = ["version__number", "instance__instance_id"] if per_instance else ["version__number"]
    rows = (
        ReleaseSignal.objects.filter(
            _since(since),
            environment=environment,
            version__prompt_set=prompt_set,
            version__number__in=list(versions),
        )
        .values(*keys)
        .annotate(**_SUMS)
        .order_by(*keys)
    )
    result = []
    for row in rows:
        item: dict[str, Any] = {"version": row["version__number"]}
        if per_instance:
            item["instance_id"] = row["instance__instance_id"]
        item.update({key: int(row[key] or 0) for key in _SUMS})
        result.append(item)
    return result


def _describe(kind: str, detail: str) -> str:
    if kind == "missing_variables":
        return f"missing variable{'s' if ',' in detail else ''} {detail}"
    if kind == "invalid_variable":
        return f"invalid value for variable {detail}"
    if kind == "render_limit":
        return f"render limit ({detail})"
    return f"template error: {detail}"


def _instances(n: int) -> str:
    return f"{n} instance{'' if n == 1 else 's'}"


def release_warnings(release: Release) -> list[str]:
    """What the release page warns of: per prompt and problem, how many instances served the previous text
    (render guard) or failed to render it, e.g. "3 instances served the previous text for welcome.message:
    missing variable plan"; and how many reported failed outcomes."""
    return version_warnings(environment_id=release.environment_id, version_id=release.version_id)


def version_warnings(*, environment_id: int, version_id: int, instances: Collection[str] | None = None) -> list[str]:
    """:func:`release_warnings` for a version in an environment, released or not (a canary); ``instances``: only
    what those instance ids reported (the canary instances of a rollout)."""
    guarded: dict[tuple[str, str, str], set[int]] = {}
    failed: dict[tuple[str, str, str], set[int]] = {}
    outcomes: dict[str, set[int]] = {}
    problems = ReleaseProblem.objects.filter(environment_id=environment_id, version_id=version_id)
    if instances is not None:
        problems = problems.filter(instance__instance_id__in=sorted(instances))
    rows = problems.values_list("prompt", "kind", "detail", "count", "guarded", "instance_id")
    for prompt, kind, detail, count, kept, instance in rows:
        if kind == "outcome":
            outcomes.setdefault(detail, set()).add(instance)
            continue
        if kept:
            guarded.setdefault((prompt, kind, detail), set()).add(instance)
        if count > kept:
            failed.setdefault((prompt, kind, detail), set()).add(instance)
    warnings = [
        f"{_instances(len(instances))} served the previous text for {prompt}: {_describe(kind, detail)}"
        for (prompt, kind, detail), instances in sorted(guarded.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    ]
    warnings += [
        f"{_instances(len(instances))} failed to render {prompt}: {_describe(kind, detail)}"
        for (prompt, kind, detail), instances in sorted(failed.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    ]
    warnings += [
        f"{_instances(len(instances))} reported failed outcomes: {kind}"
        for kind, instances in sorted(outcomes.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    ]
    return warnings

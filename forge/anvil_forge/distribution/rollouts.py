"""Canary rollouts (issue 16): a version goes to a growing share of an environment's instances, stage by stage,
and halts by itself when the canary does worse than the rest.

The FORGE decides who runs what; the client never computes eligibility. While a rollout is active:

* the environment's current :class:`~.models.Release` stays the previous one: every instance that is not chosen,
  and every client that does not name its instance (``X-Anvil-Instance``), keeps it;
* the chosen instances (``Rollout.chosen``) are told about the canary version: ``GET /api/v1/live/releases``
  answers them with the canary's entry for the set, and the stream sends them the canary's ``release`` event
  (without an ``id:``, so ``Last-Event-ID`` keeps counting releases);
* instances are chosen by rank: sha256 of ``"<set id>:<version number>:<instance id>"``; a stage of p % takes the
  ceil(p % of the eligible instances) lowest-ranked ones; FROZEN instances and instances pinning the set are not
  eligible and not counted. ``chosen`` only grows while the rollout is active, so raising the percentage moves no
  instance back.

Ending: promotion past the last stage publishes the version to everyone (a normal release); a halt (the evaluator)
or an abort (by hand) makes a new version with the previous version's content and publishes it (forward-only, as
a rollback does), so the canary instances serve the previous text again. Every transition is audited.

The evaluator (:func:`rollouts_evaluate`) runs in a background task of every FORGE process
(:class:`Evaluator`); on PostgreSQL one process at a time evaluates (``pg_try_advisory_xact_lock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from anvil_forge.accounts.permissions import Actor, Capability, SystemActor, require
from anvil_forge.audit.services import audit_record
from anvil_forge.core.exceptions import ApplicationError, Conflict, NotFound
from anvil_forge.distribution.models import InstanceMode, LiveProcess, Release
from anvil_forge.distribution.rollout_models import (
    ACTIVE_STATES,
    Rollout,
    RolloutSettings,
    RolloutState,
)
from anvil_forge.prompts.models import Environment, PromptSetVersion, VersionState

logger = logging.getLogger(__name__)

# Defaults (a rollout records the values it was started with).
DEFAULT_STAGES = (
    {"percent": 5, "bake_seconds": 600},
    {"percent": 25, "bake_seconds": 600},
    {"percent": 100, "bake_seconds": 0},
)
DEFAULT_THRESHOLD = float(os.environ.get("ANVIL_ROLLOUT_THRESHOLD", "2.0"))  # percentage points
DEFAULT_MIN_RENDERS = int(os.environ.get("ANVIL_ROLLOUT_MIN_RENDERS", "50"))
# What the check-in answer tells instances while a rollout runs in their environment.
ROLLOUT_CHECKIN_INTERVAL = float(os.environ.get("ANVIL_ROLLOUT_CHECKIN_INTERVAL", "5"))
EVALUATE_SECONDS = float(os.environ.get("ANVIL_ROLLOUT_EVALUATE_SECONDS", "0.5"))
PUSH_SECONDS = float(os.environ.get("ANVIL_ROLLOUT_PUSH_SECONDS", "0.2"))
OVERLAY_MAX_AGE = float(os.environ.get("ANVIL_ROLLOUT_CACHE_SECONDS", "0.5"))
MAX_STAGES = 10
MAX_BAKE_SECONDS = 7 * 86_400
ADVISORY_LOCK_KEY = 0x616E76696C_0016  # "anvil" + issue 16

EVALUATOR = SystemActor("rollout evaluator")


# -- deterministic selection --------------------------------------------------------------------------------------


def rank(*, prompt_set_id: int, version_number: int, instance_id: str) -> int:
    """The place of an instance in a rollout's order: the lower, the sooner it is chosen (stable across processes)."""
    digest = hashlib.sha256(f"{prompt_set_id}:{version_number}:{instance_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def target_count(percent: float, eligible: int) -> int:
    """How many of ``eligible`` instances a stage of ``percent`` takes: ceil, and at least one when above 0 %."""
    if eligible <= 0 or percent <= 0:
        return 0
    if percent >= 100:
        return eligible
    return max(1, math.ceil(eligible * percent / 100 - 1e-9))


def choose(
    *, prompt_set_id: int, version_number: int, percent: float, eligible: list[str], already: list[str]
) -> list[str]:
    """``already`` plus the lowest-ranked eligible instances not in it, until the stage's share is reached.

    Never drops an instance: instances chosen before stay chosen (they run the canary already).
    """
    chosen = list(already)
    taken = set(chosen)
    eligible_set = set(eligible)
    have = sum(1 for instance_id in chosen if instance_id in eligible_set)
    want = target_count(percent, len(eligible_set))
    if have >= want:
        return chosen
    order = sorted(
        (i for i in eligible_set if i not in taken),
        key=lambda i: (rank(prompt_set_id=prompt_set_id, version_number=version_number, instance_id=i), i),
    )
    for instance_id in order[: want - have]:
        chosen.append(instance_id)
    return chosen


def eligible_instances(*, environment_id: int, set_slug: str, now: datetime | None = None) -> list[str]:
    """The instance ids that may take part: a live process, every live process ACCEPTING and none pinning the set."""
    now = now or timezone.now()
    processes = LiveProcess.objects.live(now=now).filter(instance__environment_id=environment_id)
    ok: dict[str, bool] = {}
    for instance_id, mode, pins in processes.values_list("instance__instance_id", "mode", "pins"):
        fine = mode == InstanceMode.ACCEPTING and not (isinstance(pins, dict) and set_slug in pins)
        ok[instance_id] = ok.get(instance_id, True) and fine
    return sorted(i for i, fine in ok.items() if fine)


# -- stages ------------------------------------------------------------------------------------------------------


def parse_stages(raw: Any) -> list[dict[str, int | float]]:
    """Validated stages: 1 to 10 rising percentages in (0, 100], each with a bake time; 100 % is appended when the
    last stage is below it. Accepts ``"5:600,25:600,100"`` (percent[:bake seconds]) or a list of dicts."""
    items: list[tuple[Any, Any]] = []
    if isinstance(raw, str):
        for part in raw.replace(" ", "").split(","):
            if not part:
                continue
            percent, _, bake = part.partition(":")
            items.append((percent.rstrip("%"), bake or "0"))
    elif isinstance(raw, list | tuple):
        for stage in raw:
            if not isinstance(stage, dict):
                raise ApplicationError("Each stage needs a percent and a bake time.")
            items.append((stage.get("percent"), stage.get("bake_seconds", 0)))
    else:
        raise ApplicationError("Stages look like 5:600,25:600,100 (percent:bake seconds).")
    stages: list[dict[str, int | float]] = []
    for percent_raw, bake_raw in items:
        try:
            percent = float(percent_raw)
            bake = int(float(bake_raw))
        except (TypeError, ValueError):
            raise ApplicationError(f"Stage {percent_raw}:{bake_raw} is not percent:bake seconds.") from None
        if not 0 < percent <= 100 or not math.isfinite(percent):
            raise ApplicationError("A stage's percentage is above 0 and at most 100.")
        if not 0 <= bake <= MAX_BAKE_SECONDS:
            raise ApplicationError(f"A bake time is 0 to {MAX_BAKE_SECONDS} seconds.")
        if stages and percent <= float(stages[-1]["percent"]):
            raise ApplicationError("Stage percentages must rise (5, 25, 100).")
        stages.append({"percent": int(percent) if percent.is_integer() else percent, "bake_seconds": bake})
    if not stages:
        raise ApplicationError("A rollout needs at least one stage.")
    if float(stages[-1]["percent"]) < 100:
        stages.append({"percent": 100, "bake_seconds": 0})
    if len(stages) > MAX_STAGES:
        raise ApplicationError(f"A rollout has at most {MAX_STAGES} stages.")
    return stages


# -- writes ------------------------------------------------------------------------------------------------------


def _user(actor: Any) -> Any:
    return actor if getattr(actor, "pk", None) is not None else None


def _audit(*, actor: Any, action: str, rollout: Rollout, data: dict[str, Any]) -> None:
    project = rollout.environment.project
    audit_record(
        actor=actor,
        action=action,
        obj=rollout,
        organisation=project.organisation,
        project=project,
        data={
            "set": rollout.prompt_set.slug,
            "environment": rollout.environment.slug,
            "version": rollout.version.number,
            "previous_version": rollout.previous_release.version.number,
            **data,
        },
    )


def _changed(environment_id: int) -> None:
    """After commit: this process's overlay cache forgets the environment, its streams are checked at once."""
    transaction.on_commit(lambda: pusher.changed(environment_id))


def rollout_start(
    *,
    actor: Actor,
    version: PromptSetVersion,
    environment: Environment,
    stages: Any = None,
    threshold: float | None = None,
    min_renders: int | None = None,
    now: datetime | None = None,
) -> Rollout:
    """Start publishing ``version`` to ``environment`` by stages (a canary). Refused where a publish would be, when
    nothing is live there yet (the canary is compared with the previous version), or while a rollout of the set
    is active there."""
    prompt_set = version.prompt_set
    project = prompt_set.project
    require(actor, project.organisation, Capability.PUBLISH, what=f"version {version}")
    if environment.project_id != project.pk:
        raise NotFound(f"{project} has no environment {environment.slug}.")
    defaults = project_defaults(project=project)
    parsed = parse_stages(defaults["stages"] if stages is None else stages)
    threshold = float(defaults["threshold"]) if threshold is None else float(threshold)
    if not 0 <= threshold <= 100 or not math.isfinite(threshold):
        raise ApplicationError("The threshold is 0 to 100 percentage points.")
    min_renders = int(defaults["min_renders"]) if min_renders is None else int(min_renders)
    _check_min_renders(min_renders)
    now = now or timezone.now()
    with transaction.atomic():
        environment = (
            Environment.objects.select_for_update().select_related("project__organisation").get(pk=environment.pk)
        )
        version = PromptSetVersion.objects.select_related("prompt_set").get(pk=version.pk)
        if version.prompt_set.archived_at is not None:
            raise ApplicationError(f"{prompt_set.slug} is archived; restore it before publishing.")
        allowed = version.state == VersionState.APPROVED or (
            version.state == VersionState.IN_REVIEW and environment.accepts_review_versions
        )
        if not allowed:
            raise ApplicationError(
                f"Version {version.number} of {prompt_set.slug} cannot go to {environment.slug} "
                f"(it is {version.state})."
            )
        current = (
            Release.objects.filter(environment=environment, prompt_set_id=prompt_set.pk)
            .select_related("version")
            .order_by("-id")
            .first()
        )
        if current is None:
            raise ApplicationError(
                f"Nothing of {prompt_set.slug} is live in {environment.slug} yet: a canary is compared with the "
                "previous version, so publish the first version to everyone."
            )
        if current.version.number >= version.number:
            raise Conflict(
                f"Version {current.version.number} of {prompt_set.slug} is live in {environment.slug}; a rollout "
                "takes a newer version (LIVE instances never step back)."
            )
        if Rollout.objects.filter(
            environment=environment, prompt_set_id=prompt_set.pk, state__in=ACTIVE_STATES
        ).exists():
            raise Conflict(f"A rollout of {prompt_set.slug} is already under way in {environment.slug}.")
        percent = float(parsed[0]["percent"])
        eligible = eligible_instances(environment_id=environment.pk, set_slug=prompt_set.slug, now=now)
        chosen = choose(
            prompt_set_id=prompt_set.pk, version_number=version.number, percent=percent, eligible=eligible, already=[]
        )
        rollout = Rollout.objects.create(
            environment=environment,
            prompt_set_id=prompt_set.pk,
            version=version,
            previous_release=current,
            stages=parsed,
            stage=0,
            stage_started_at=now,
            chosen=chosen,
            threshold=threshold,
            min_renders=min_renders,
            created_by=_user(actor),
        )
        _audit(
            actor=actor,
            action="rollout.start",
            rollout=rollout,
            data={
                "stages": parsed,
                "threshold": threshold,
                "min_renders": min_renders,
                "chosen": len(chosen),
                "eligible": len(eligible),
                "percent": percent,
            },
        )
        _changed(environment.pk)
    return rollout


def _check_min_renders(min_renders: int) -> None:
    if not 1 <= min_renders <= 10_000_000:
        raise ApplicationError("The minimum number of renders is 1 to 10,000,000.", {"field": "min_renders"})


def _stages_text(stages: list[dict[str, int | float]]) -> str:
    return ",".join(f"{stage['percent']:g}:{stage['bake_seconds']}" for stage in stages)


def project_defaults(*, project: Any) -> dict[str, Any]:
    """A project's defaults for new rollouts: ``stages`` (text), ``threshold``, ``min_renders`` (and ``own``:
    whether the project set them, else the FORGE's)."""
    saved = RolloutSettings.objects.filter(project=project).first()
    if saved is None:
        return {
            "stages": _stages_text(list(DEFAULT_STAGES)),
            "threshold": DEFAULT_THRESHOLD,
            "min_renders": DEFAULT_MIN_RENDERS,
            "own": False,
        }
    return {"stages": saved.stages, "threshold": saved.threshold, "min_renders": saved.min_renders, "own": True}


def rollout_settings_update(
    *, actor: Actor, project: Any, stages: Any, threshold: float, min_renders: int
) -> RolloutSettings:
    """Set a project's defaults for new rollouts (owners and admins: the project's settings)."""
    require(actor, project.organisation, Capability.MANAGE_PROJECT, what=f"project {project}")
    text = _stages_text(parse_stages(stages))
    threshold = float(threshold)
    if not 0 <= threshold <= 100 or not math.isfinite(threshold):
        raise ApplicationError("The threshold is 0 to 100 percentage points.", {"field": "threshold"})
    _check_min_renders(int(min_renders))
    with transaction.atomic():
        saved, _ = RolloutSettings.objects.update_or_create(
            project=project, defaults={"stages": text, "threshold": threshold, "min_renders": int(min_renders)}
        )
        audit_record(
            actor=actor,
            action="project.rollout_settings",
            obj=project,
            organisation=project.organisation,
            project=project,
            data={"stages": text, "threshold": threshold, "min_renders": int(min_renders)},
        )
    return saved


def _locked(rollout: Rollout) -> Rollout:
    return (
        Rollout.objects.select_for_update(of=("self",))
        .select_related("environment__project__organisation", "prompt_set", "version", "previous_release__version")
        .get(pk=rollout.pk)
    )


def _require_active(rollout: Rollout) -> None:
    if not rollout.active:
        raise Conflict(f"This rollout is {rollout.state}; nothing more can be done with it.")


def rollout_promote(*, actor: Actor, rollout: Rollout, now: datetime | None = None, reason: str = "") -> Rollout:
    """Go to the next stage now (growing the canary), or past the last one: publish the version to everyone."""
    require(actor, rollout.environment.project.organisation, Capability.PUBLISH, what=f"rollout {rollout.pk}")
    now = now or timezone.now()
    with transaction.atomic():
        locked = _locked(rollout)
        _require_active(locked)
        before = locked.percent
        if locked.stage + 1 >= len(locked.stages) or float(locked.stages[locked.stage + 1]["percent"]) >= 100:
            return _complete(actor=actor, rollout=locked, now=now, reason=reason, from_percent=before)
        locked.stage += 1
        locked.stage_started_at = now
        locked.state = RolloutState.RUNNING
        eligible = eligible_instances(environment_id=locked.environment_id, set_slug=locked.prompt_set.slug, now=now)
        locked.chosen = choose(
            prompt_set_id=locked.prompt_set_id,
            version_number=locked.version.number,
            percent=locked.percent,
            eligible=eligible,
            already=list(locked.chosen),
        )
        locked.save(update_fields=["stage", "stage_started_at", "state", "chosen"])
        _audit(
            actor=actor,
            action="rollout.promote",
            rollout=locked,
            data={
                "from_percent": before,
                "to_percent": locked.percent,
                "chosen": len(locked.chosen),
                "eligible": len(eligible),
                "reason": reason,
            },
        )
        _changed(locked.environment_id)
    return locked


def _complete(*, actor: Actor, rollout: Rollout, now: datetime, reason: str, from_percent: float) -> Rollout:
    from anvil_forge.prompts.services import version_publish

    release = version_publish(actor=actor, version=rollout.version, environment=rollout.environment)
    rollout.state = RolloutState.COMPLETED
    rollout.stage = len(rollout.stages) - 1
    rollout.release = release
    rollout.finished_at = now
    rollout.save(update_fields=["state", "stage", "release", "finished_at"])
    _audit(
        actor=actor,
        action="rollout.complete",
        rollout=rollout,
        data={"from_percent": from_percent, "to_percent": 100, "release": release.pk, "reason": reason},
    )
    _changed(rollout.environment_id)
    return rollout


def rollout_pause(*, actor: Actor, rollout: Rollout, reason: str = "") -> Rollout:
    """Stop promoting: the canary stays where it is (a failing canary still halts)."""
    return _set_state(actor=actor, rollout=rollout, state=RolloutState.PAUSED, action="rollout.pause", reason=reason)


def rollout_resume(*, actor: Actor, rollout: Rollout) -> Rollout:
    """Promote again when the current stage passes."""
    return _set_state(actor=actor, rollout=rollout, state=RolloutState.RUNNING, action="rollout.resume", reason="")


def _set_state(*, actor: Actor, rollout: Rollout, state: str, action: str, reason: str) -> Rollout:
    require(actor, rollout.environment.project.organisation, Capability.PUBLISH, what=f"rollout {rollout.pk}")
    with transaction.atomic():
        locked = _locked(rollout)
        _require_active(locked)
        if locked.state == state:
            raise Conflict(f"This rollout is already {state}.")
        locked.state = state
        locked.reason = reason
        locked.save(update_fields=["state", "reason"])
        _audit(actor=actor, action=action, rollout=locked, data={"percent": locked.percent, "reason": reason})
    return locked


def rollout_abort(
    *, actor: Actor, rollout: Rollout, reason: str, halted: bool = False, now: datetime | None = None
) -> Rollout:
    """Stop the rollout and send the canary instances back to the previous content: a new version with the
    previous version's content, published to everyone (forward-only, as a rollback). ``halted``: the evaluator
    did it (state ``halted``, audited as ``rollout.halt``)."""
    require(actor, rollout.environment.project.organisation, Capability.PUBLISH, what=f"rollout {rollout.pk}")
    reason = (reason or "").strip()[:2000] or "aborted by hand"
    now = now or timezone.now()
    from anvil_forge.prompts.services import version_publish, version_rollback

    with transaction.atomic():
        locked = _locked(rollout)
        _require_active(locked)
        newest = (
            Release.objects.filter(environment_id=locked.environment_id, prompt_set_id=locked.prompt_set_id)
            .order_by("-id")
            .first()
        )
        release = None
        if locked.chosen and newest is not None and newest.pk == locked.previous_release_id:
            made = version_rollback(actor=actor, version=locked.previous_release.version)
            release = version_publish(actor=actor, version=made, environment=locked.environment)
        locked.state = RolloutState.HALTED if halted else RolloutState.ABORTED
        locked.reason = reason
        locked.halt_release = release
        locked.finished_at = now
        locked.save(update_fields=["state", "reason", "halt_release", "finished_at"])
        _audit(
            actor=actor,
            action="rollout.halt" if halted else "rollout.abort",
            rollout=locked,
            data={
                "percent": locked.percent,
                "reason": reason,
                "chosen": len(locked.chosen),
                "release": release.pk if release else None,
                "rollback_version": release.version.number if release else None,
            },
        )
        _changed(locked.environment_id)
    return locked


# -- health and the evaluator ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Side:
    renders: int = 0
    errors: int = 0
    outcomes_ok: int = 0  # outcomes the hosts reported with ``anvil_client.report(...)``
    outcomes_failed: int = 0

    @property
    def rate(self) -> float:
        """Errors per 100 renders (0 without renders)."""
        return 100.0 * self.errors / self.renders if self.renders else 0.0

    @property
    def outcomes(self) -> int:
        return self.outcomes_ok + self.outcomes_failed

    @property
    def failure_rate(self) -> float:
        """Failed outcomes per 100 reported outcomes (0 without outcomes)."""
        return 100.0 * self.outcomes_failed / self.outcomes if self.outcomes else 0.0


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str  # "pass", "fail", "wait"
    message: str
    canary: Side = field(default_factory=Side)
    baseline: Side = field(default_factory=Side)


def judge(*, canary: Side, baseline: Side, threshold: float, min_renders: int, bake_left: float) -> Verdict:
    """Whether a stage passes, fails or waits (pure; the evaluator's rule).

    Fails as soon as the canary has ``min_renders`` renders and its error rate exceeds the baseline's by more
    than ``threshold`` points; passes when, besides, the bake time is over and it does not.

    Outcomes the hosts report (``anvil_client.report(prompt_id, ok, kind=...)``) are judged the same way when
    there are enough of them: once the canary has ``min_renders`` reported outcomes and the other instances at
    least one, a failed-outcome rate more than ``threshold`` points above the others' fails the stage too. Hosts
    that report no outcomes are judged on render errors alone.
    """
    if canary.renders < min_renders:
        return Verdict("wait", f"not enough traffic yet ({canary.renders} of {min_renders} renders)", canary, baseline)
    worse_by = canary.rate - baseline.rate
    if worse_by > threshold:
        return Verdict(
            "fail",
            f"canary error rate {canary.rate:.1f}% ({canary.errors} of {canary.renders} renders) is {worse_by:.1f} "
            f"points above the previous version's {baseline.rate:.1f}% on the other instances (threshold "
            f"{threshold:g})",
            canary,
            baseline,
        )
    judged_outcomes = canary.outcomes >= min_renders and baseline.outcomes > 0
    if judged_outcomes:
        worse_by = canary.failure_rate - baseline.failure_rate
        if worse_by > threshold:
            return Verdict(
                "fail",
                f"canary failed outcomes {canary.failure_rate:.1f}% ({canary.outcomes_failed} of {canary.outcomes} "
                f"reported) is {worse_by:.1f} points above the previous version's {baseline.failure_rate:.1f}% on "
                f"the other instances (threshold {threshold:g})",
                canary,
                baseline,
            )
    if bake_left > 0:
        return Verdict("wait", f"baking: {math.ceil(bake_left)} s left", canary, baseline)
    message = f"canary error rate {canary.rate:.1f}% vs {baseline.rate:.1f}%"
    if judged_outcomes:
        message += f", failed outcomes {canary.failure_rate:.1f}% vs {baseline.failure_rate:.1f}%"
    return Verdict("pass", message, canary, baseline)


def _default_health(rollout: Rollout, now: datetime) -> tuple[Side, Side]:
    """(canary, baseline) of the current stage, from the health app's counters (what the check-ins reported, per
    version, instance and minute; the one record of the signals): the canary version's renders and render errors
    on the chosen instances, the previous version's on the others, from the minute the stage started in; and the
    outcomes the hosts reported of each.

    Render errors include the renders the client's render guard answered with the previous text (a guarded
    render is counted as an error of its kind), so a canary the guard hides still fails."""
    from anvil_forge.health.selectors import version_health

    health = version_health(
        environment_id=rollout.environment_id,
        version_id=rollout.version_id,
        canary=rollout.chosen,
        rest_version_id=rollout.previous_release.version_id,
        since=rollout.stage_started_at,
    )
    canary, rest = health.canary, health.rest
    return (
        Side(canary.renders, canary.errors, canary.outcomes_ok, canary.outcomes_failed),
        Side(rest.renders, rest.errors, rest.outcomes_ok, rest.outcomes_failed),
    )


# Tests and the bench may replace this: (rollout, now) -> (canary, baseline).
health_source: Callable[[Rollout, datetime], tuple[Side, Side]] = _default_health


def rollout_evaluate(rollout: Rollout, *, now: datetime | None = None) -> Verdict:
    """Look at one active rollout now: grow the canary to its stage's share (new instances), then halt, promote or
    wait; the look is recorded on the rollout for its page."""
    now = now or timezone.now()
    newest = (
        Release.objects.filter(environment_id=rollout.environment_id, prompt_set_id=rollout.prompt_set_id)
        .order_by("-id")
        .first()
    )
    if newest is not None and newest.pk != rollout.previous_release_id:
        # Someone published (or rolled back) meanwhile: that release is what everyone runs now.
        with transaction.atomic():
            locked = _locked(rollout)
            if locked.active:
                locked.state = RolloutState.ABORTED
                locked.reason = f"superseded by the release of version {newest.version.number}"
                locked.finished_at = now
                locked.save(update_fields=["state", "reason", "finished_at"])
                _audit(actor=EVALUATOR, action="rollout.abort", rollout=locked, data={"reason": locked.reason})
                _changed(locked.environment_id)
        return Verdict("fail", f"superseded by version {newest.version.number}")
    eligible = eligible_instances(environment_id=rollout.environment_id, set_slug=rollout.prompt_set.slug, now=now)
    grown = choose(
        prompt_set_id=rollout.prompt_set_id,
        version_number=rollout.version.number,
        percent=rollout.percent,
        eligible=eligible,
        already=list(rollout.chosen),
    )
    canary, baseline = health_source(rollout, now)
    stage = rollout.stages[rollout.stage]
    bake_left = float(stage["bake_seconds"]) - (now - rollout.stage_started_at).total_seconds()
    verdict = judge(
        canary=canary,
        baseline=baseline,
        threshold=rollout.threshold,
        min_renders=rollout.min_renders,
        bake_left=bake_left,
    )
    look = {
        "at": now.isoformat(),
        "outcome": verdict.outcome,
        "message": verdict.message,
        "canary": _look(canary),
        "baseline": _look(baseline),
        "eligible": len(eligible),
    }
    if verdict.outcome == "fail":
        rollout_abort(actor=EVALUATOR, rollout=rollout, reason=verdict.message, halted=True, now=now)
        Rollout.objects.filter(pk=rollout.pk).update(evaluation=look)
        return verdict
    if verdict.outcome == "pass" and rollout.state == RolloutState.RUNNING:
        promoted = rollout_promote(actor=EVALUATOR, rollout=rollout, now=now, reason=verdict.message)
        Rollout.objects.filter(pk=promoted.pk).update(evaluation=look)
        return verdict
    with transaction.atomic():
        locked = _locked(rollout)
        fields = ["evaluation"]
        locked.evaluation = look
        if locked.active and grown != list(locked.chosen):
            locked.chosen = grown
            fields.append("chosen")
            _changed(locked.environment_id)
        locked.save(update_fields=fields)
    return verdict


def _look(side: Side) -> dict[str, Any]:
    return {
        "renders": side.renders,
        "errors": side.errors,
        "rate": round(side.rate, 3),
        "outcomes_ok": side.outcomes_ok,
        "outcomes_failed": side.outcomes_failed,
        "failure_rate": round(side.failure_rate, 3),
    }


def rollouts_evaluate(*, now: datetime | None = None) -> int:
    """Evaluate every active rollout (one evaluator at a time across processes on PostgreSQL); how many were."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
                if not cursor.fetchone()[0]:
                    return 0
        active = list(
            Rollout.objects.filter(state__in=ACTIVE_STATES).select_related(
                "environment__project__organisation", "prompt_set", "version", "previous_release__version"
            )
        )
        for rollout in active:
            try:
                with transaction.atomic():
                    rollout_evaluate(rollout, now=now)
            except Exception:
                logger.exception("could not evaluate rollout %s", rollout.pk)
    return len(active)


# -- reads: who runs what ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Canary:
    """An active rollout as the LIVE API serves it: the entry and stream frame for the chosen instances."""

    set_slug: str
    version: int
    chosen: frozenset[str]
    entry: dict[str, Any]
    frame: bytes


def load_overlay(environment_id: int) -> tuple[Canary, ...]:
    """The active rollouts of an environment with their entries and frames (database work)."""
    from django.conf import settings

    from anvil_forge.distribution.bundles import _event_data, _iso, bundle_for

    rollouts = Rollout.objects.filter(environment_id=environment_id, state__in=ACTIVE_STATES).select_related(
        "environment",
        "prompt_set__project__organisation",
        "version__created_by",
        "version__reviewed_by",
        "version__prompt_set__project__organisation",
        "previous_release__version",
    )
    canaries = []
    for rollout in rollouts:
        version = rollout.version
        built = bundle_for(version=version, environment=rollout.environment, release=None)
        slug = rollout.prompt_set.slug
        entry = {
            "set": slug,
            "version": built.version,
            "release_id": rollout.previous_release_id,
            "digest": built.digest,
            "content_digest": built.content_digest,
            "published_at": _iso(rollout.created_at),
            "bundle_url": f"/api/v1/live/bundles/{slug}?version={built.version}",
            "rollout": {"id": rollout.pk, "percent": rollout.percent, "stage": rollout.stage + 1},
        }
        data = _event_data(entry, built, settings.ANVIL_STREAM_INLINE_BUNDLE_BYTES)
        canaries.append(
            Canary(
                set_slug=slug,
                version=built.version,
                chosen=frozenset(rollout.chosen),
                entry=entry,
                frame=b"event: release\ndata: %s\n\n" % data,
            )
        )
    return tuple(canaries)


class OverlayCache:
    """Per environment, the active canaries, read at most every ``OVERLAY_MAX_AGE`` seconds (and at once after a
    change made by this process)."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[float, tuple[Canary, ...]]] = {}
        self._lock = threading.Lock()

    def get(self, environment_id: int) -> tuple[Canary, ...] | None:
        entry = self._entries.get(environment_id)
        if entry is None or time.monotonic() - entry[0] >= OVERLAY_MAX_AGE:
            return None
        return entry[1]

    def put(self, environment_id: int, read_at: float, canaries: tuple[Canary, ...]) -> None:
        with self._lock:
            if len(self._entries) > 2000:
                self._entries = {}
            self._entries[environment_id] = (read_at, canaries)

    def forget(self, environment_id: int | None = None) -> None:
        with self._lock:
            if environment_id is None:
                self._entries = {}
            else:
                self._entries.pop(environment_id, None)


overlay_cache = OverlayCache()


def overlay_sync(environment_id: int) -> tuple[Canary, ...]:
    """The environment's canaries, from the cache or the database (call from a database thread)."""
    cached = overlay_cache.get(environment_id)
    if cached is not None:
        return cached
    read_at = time.monotonic()
    canaries = load_overlay(environment_id)
    overlay_cache.put(environment_id, read_at, canaries)
    return canaries


async def overlay(environment_id: int) -> tuple[Canary, ...]:
    cached = overlay_cache.get(environment_id)
    if cached is not None:
        return cached
    from anvil_forge.distribution.broadcast import run_in_db_thread

    return await run_in_db_thread(overlay_sync, environment_id)


def releases_for_instance(body: bytes, canaries: tuple[Canary, ...], instance_id: str | None) -> bytes:
    """The releases answer for ``instance_id``: the environment's, with the canary entry of each set whose
    rollout chose the instance."""
    if not instance_id or not canaries:
        return body
    mine = {canary.set_slug: canary for canary in canaries if instance_id in canary.chosen}
    if not mine:
        return body
    data = json.loads(body)
    data["releases"] = [mine[e["set"]].entry if e.get("set") in mine else e for e in data.get("releases", [])]
    return json.dumps(data).encode()


def frames_for_instance(canaries: tuple[Canary, ...], instance_id: str | None) -> list[bytes]:
    if not instance_id:
        return []
    return [canary.frame for canary in canaries if instance_id in canary.chosen]


def rollout_checkin_interval(canaries: tuple[Canary, ...], default: float) -> float:
    """The check-in interval the FORGE asks for: ``ANVIL_ROLLOUT_CHECKIN_INTERVAL`` while a rollout is active in
    the environment (``canaries``), else ``default``."""
    if canaries:
        value = min(float(default), ROLLOUT_CHECKIN_INTERVAL)
        return int(value) if value.is_integer() else value
    return default


# -- the stream side and the background tasks (on the server's loop) ------------------------------------------


class Pusher:
    """Sends each chosen instance's open streams the canary's ``release`` event, once per (set, version), when a
    rollout starts or grows; and runs the evaluator every ``EVALUATE_SECONDS``."""

    def __init__(self) -> None:
        self.instances: dict[Any, str] = {}  # subscriber -> instance id
        self.sent: dict[Any, set[tuple[str, int]]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._poke: asyncio.Event | None = None

    def opened(self, subscriber: Any, instance_id: str | None, sent: list[tuple[str, int]]) -> None:
        if instance_id:
            self.instances[subscriber] = instance_id
            self.sent[subscriber] = set(sent)

    def closed(self, subscriber: Any) -> None:
        self.instances.pop(subscriber, None)
        self.sent.pop(subscriber, None)

    def changed(self, environment_id: int) -> None:
        """A rollout of the environment changed (called after commit, from any thread)."""
        overlay_cache.forget(environment_id)
        loop, poke = self.loop, self._poke
        if loop is not None and poke is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(poke.set)

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def start(self, *, evaluate: bool = True) -> None:
        if self._tasks:
            return
        self.loop = asyncio.get_running_loop()
        self._poke = asyncio.Event()
        self._tasks = [asyncio.create_task(self._push_loop(), name="anvil.rollout-push")]
        if evaluate and EVALUATE_SECONDS > 0:
            self._tasks.append(asyncio.create_task(self._evaluate_loop(), name="anvil.rollout-evaluate"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.loop = None

    async def push_once(self) -> int:
        by_environment: dict[int, list[Any]] = {}
        for subscriber in list(self.instances):
            if not subscriber.closed:
                by_environment.setdefault(subscriber.environment_id, []).append(subscriber)
        offered = 0
        for environment_id, subscribers in by_environment.items():
            canaries = await overlay(environment_id)
            for canary in canaries:
                key = (canary.set_slug, canary.version)
                for subscriber in subscribers:
                    sent = self.sent.get(subscriber)
                    if sent is None or key in sent or self.instances.get(subscriber) not in canary.chosen:
                        continue
                    sent.add(key)
                    subscriber.offer(0, canary.frame)
                    offered += 1
        return offered

    async def _push_loop(self) -> None:
        assert self._poke is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), timeout=PUSH_SECONDS)
            self._poke.clear()
            try:
                await self.push_once()
            except Exception:
                logger.exception("rollout push failed; retrying")
                await asyncio.sleep(1.0)

    async def _evaluate_loop(self) -> None:
        from anvil_forge.distribution.broadcast import run_in_db_thread

        while True:
            await asyncio.sleep(EVALUATE_SECONDS)
            try:
                await run_in_db_thread(rollouts_evaluate)
            except Exception:
                logger.exception("rollout evaluation failed; retrying")


pusher = Pusher()


def stage_rows(rollout: Rollout, now: datetime | None = None) -> list[dict[str, Any]]:
    """The stages for a page: percent, bake time, and whether each is done, current or to come."""
    now = now or timezone.now()
    rows = []
    for index, stage in enumerate(rollout.stages):
        if rollout.state == RolloutState.COMPLETED or index < rollout.stage:
            status = "done"
        elif index == rollout.stage:
            status = "current" if rollout.active else rollout.state
        else:
            status = "to come"
        left = None
        if index == rollout.stage and rollout.active:
            left = max(0, int(stage["bake_seconds"] - (now - rollout.stage_started_at).total_seconds()))
        rows.append(
            {
                "number": index + 1,
                "percent": stage["percent"],
                "bake": timedelta(seconds=stage["bake_seconds"]),
                "status": status,
                "bake_left": left,
            }
        )
    return rows


__all__ = [
    "Canary",
    "Side",
    "Verdict",
    "choose",
    "eligible_instances",
    "judge",
    "parse_stages",
    "rank",
    "rollout_abort",
    "rollout_evaluate",
    "rollout_pause",
    "rollout_promote",
    "rollout_resume",
    "rollout_start",
    "rollouts_evaluate",
    "target_count",
]


# -- reads for the pages --------------------------------------------------------------------------------------------


def rollout_get(*, prompt_set: Any, rollout_id: int) -> Rollout:
    """A rollout of ``prompt_set`` (already scoped to the viewer by the page's place), or ``NotFound``."""
    rollout = (
        Rollout.objects.filter(pk=rollout_id, prompt_set=prompt_set)
        .select_related(
            "environment__project__organisation",
            "prompt_set",
            "version",
            "previous_release__version",
            "release",
            "halt_release__version",
            "created_by",
        )
        .first()
    )
    if rollout is None:
        raise NotFound(f"{prompt_set.slug} has no rollout {rollout_id}.")
    return rollout


def rollouts_of(*, prompt_set: Any, limit: int = 20) -> list[Rollout]:
    """The newest rollouts of a set, in every environment."""
    return list(
        Rollout.objects.filter(prompt_set=prompt_set)
        .select_related("environment", "version", "previous_release__version")
        .order_by("-id")[:limit]
    )


@dataclass(frozen=True)
class RolloutView:
    """What the rollout page shows: stages, the instances on each version, both error rates."""

    rollout: Rollout
    stages: list[dict[str, Any]]
    canary: Side
    baseline: Side
    canary_instances: list[tuple[str, str, list[int]]]  # (instance id, name, versions its live processes run)
    versions: list[tuple[int, int]]  # (version, instances running it)
    eligible: int
    verdict: str


def rollout_view(*, rollout: Rollout, now: datetime | None = None) -> RolloutView:
    now = now or timezone.now()
    slug = rollout.prompt_set.slug
    runs: dict[str, set[int]] = {}
    names: dict[str, str] = {}
    processes = LiveProcess.objects.live(now=now).filter(instance__environment_id=rollout.environment_id)
    for instance_id, name, versions in processes.values_list("instance__instance_id", "instance__name", "versions"):
        names[instance_id] = name
        number = versions.get(slug) if isinstance(versions, dict) else None
        if isinstance(number, int):
            runs.setdefault(instance_id, set()).add(number)
    counts: dict[int, int] = {}
    for numbers in runs.values():
        for number in numbers:
            counts[number] = counts.get(number, 0) + 1
    canary, baseline = health_source(rollout, now) if rollout.active else _default_health(rollout, now)
    look = rollout.evaluation or {}
    return RolloutView(
        rollout=rollout,
        stages=stage_rows(rollout, now),
        canary=canary,
        baseline=baseline,
        canary_instances=[(i, names.get(i, i), sorted(runs.get(i, ()))) for i in rollout.chosen],
        versions=sorted(counts.items(), reverse=True),
        eligible=len(eligible_instances(environment_id=rollout.environment_id, set_slug=slug, now=now)),
        verdict=str(look.get("message", "")),
    )

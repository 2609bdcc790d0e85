"""Canary rollouts (issue 16): deterministic selection, stages, per-instance answers, promote/pause/abort, the
evaluator's verdicts."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from anvil_forge.audit.models import AuditEvent
from anvil_forge.core.exceptions import ApplicationError, Conflict
from anvil_forge.distribution import rollouts
from anvil_forge.distribution.checkin import parse_checkin
from anvil_forge.distribution.live_api import releases_body
from anvil_forge.distribution.models import Release
from anvil_forge.distribution.rollout_models import Rollout, RolloutState
from anvil_forge.distribution.rollouts import Side
from anvil_forge.distribution.services import instance_checkin
from forge.tests import factories

INSTANCES = [f"host-{n:02d}" for n in range(20)]


def _checkin(live, instance_id: str, *, mode: str = "ACCEPTING", pins: dict | None = None) -> None:
    body = {
        "instance_id": instance_id,
        "process_id": 1,
        "name": instance_id,
        "host": instance_id,
        "client_version": "test",
        "mode": mode,
        "pins": pins or {},
        "versions": {live.prompt_set.slug: live.release.version.number},
        "usage": {},
        "checkin_interval": 60,
    }
    instance_checkin(token=live.token, checkin=parse_checkin(json.dumps(body).encode()))


@pytest.fixture
def fleet(live):
    for instance_id in INSTANCES:
        _checkin(live, instance_id)
    return live


@pytest.fixture
def version2(fleet):
    return factories.make_approved_version(fleet.prompt_set, author=fleet.team.editor, reviewer=fleet.team.reviewer)


def _start(fleet, version, stages="25:600,50:600,100", **kwargs) -> Rollout:
    return rollouts.rollout_start(
        actor=fleet.team.editor,
        version=version,
        environment=factories.environment(fleet.project),
        stages=stages,
        **kwargs,
    )


# -- selection -----------------------------------------------------------------------------------------------


def test_choose_takes_the_lowest_ranked_share_and_never_drops_anyone():
    eligible = INSTANCES
    first = rollouts.choose(prompt_set_id=7, version_number=2, percent=25, eligible=eligible, already=[])
    ranked = sorted(eligible, key=lambda i: rollouts.rank(prompt_set_id=7, version_number=2, instance_id=i))
    assert first == ranked[:5]
    second = rollouts.choose(prompt_set_id=7, version_number=2, percent=50, eligible=eligible, already=first)
    assert second[:5] == first and len(second) == 10 and set(second) == set(ranked[:10])
    # The same inputs give the same choice (every FORGE process agrees).
    assert rollouts.choose(prompt_set_id=7, version_number=2, percent=25, eligible=eligible, already=[]) == first
    # Another version ranks the instances differently.
    other = rollouts.choose(prompt_set_id=7, version_number=3, percent=25, eligible=eligible, already=[])
    assert other != first


def test_target_count_is_the_ceiling_and_at_least_one():
    assert rollouts.target_count(25, 20) == 5
    assert rollouts.target_count(5, 20) == 1
    assert rollouts.target_count(1, 3) == 1
    assert rollouts.target_count(100, 7) == 7
    assert rollouts.target_count(50, 0) == 0


def test_parse_stages_appends_100_and_refuses_falling_percentages():
    assert rollouts.parse_stages("5:600,25:60") == [
        {"percent": 5, "bake_seconds": 600},
        {"percent": 25, "bake_seconds": 60},
        {"percent": 100, "bake_seconds": 0},
    ]
    for bad in ("25,5", "0:10", "150", "5:-1", "x", ""):
        with pytest.raises(ApplicationError):
            rollouts.parse_stages(bad)


def test_frozen_and_pinned_instances_are_not_eligible(fleet):
    _checkin(fleet, "frozen-one", mode="FROZEN")
    _checkin(fleet, "pinned-one", pins={fleet.prompt_set.slug: 1})
    eligible = rollouts.eligible_instances(environment_id=fleet.token.environment_id, set_slug=fleet.prompt_set.slug)
    assert eligible == sorted(INSTANCES)


# -- start and the per-instance answers ---------------------------------------------------------------------


def test_a_25_percent_rollout_chooses_5_of_20_and_keeps_the_release_where_it_was(fleet, version2):
    rollout = _start(fleet, version2)
    assert len(rollout.chosen) == 5
    assert rollout.chosen == rollouts.choose(
        prompt_set_id=fleet.prompt_set.pk, version_number=version2.number, percent=25, eligible=INSTANCES, already=[]
    )
    newest = Release.objects.filter(prompt_set=fleet.prompt_set).order_by("-id").first()
    assert newest.pk == fleet.release.pk  # no release yet: everyone else keeps version 1
    assert AuditEvent.objects.filter(action="rollout.start").count() == 1


def test_the_releases_answer_names_the_canary_to_chosen_instances_only(fleet, version2):
    rollout = _start(fleet, version2)
    rollouts.overlay_cache.forget()
    body = releases_body(fleet.token)
    canaries = rollouts.load_overlay(fleet.token.environment_id)
    for instance_id in INSTANCES:
        answer = json.loads(rollouts.releases_for_instance(body, canaries, instance_id))
        (entry,) = answer["releases"]
        expected = version2.number if instance_id in rollout.chosen else 1
        assert entry["version"] == expected, instance_id
    # A client that names no instance (an old client) gets the stable version.
    assert rollouts.releases_for_instance(body, canaries, None) == body
    chosen_entry = json.loads(rollouts.releases_for_instance(body, canaries, rollout.chosen[0]))["releases"][0]
    assert chosen_entry["rollout"]["percent"] == 25
    # The entry's bundle is the one the bundle endpoint serves for that version (digest checked by the client).
    response = fleet.client().get(chosen_entry["bundle_url"])
    assert response.status_code == 200
    assert json.loads(response.content)["digest"] == chosen_entry["digest"]
    (frame,) = rollouts.frames_for_instance(canaries, rollout.chosen[0])
    assert frame.startswith(b"event: release\ndata: ") and b"\nid:" not in frame
    assert rollouts.frames_for_instance(canaries, "not-chosen") == []


def test_a_rollout_is_refused_without_a_previous_release_or_for_an_older_version(fleet, version2, team, project):
    with pytest.raises(Conflict):
        _start(fleet, fleet.release.version)
    _start(fleet, version2)
    with pytest.raises(Conflict):  # one active rollout per set and environment
        _start(fleet, version2)
    other = factories.make_prompt_set_with_prompts(project, actor=team.editor)
    fresh = factories.make_approved_version(other, author=team.editor, reviewer=team.reviewer)
    with pytest.raises(ApplicationError):
        _start(fleet, fresh)


def test_a_viewer_cannot_start_a_rollout(fleet, version2):
    from anvil_forge.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        rollouts.rollout_start(
            actor=fleet.team.viewer, version=version2, environment=factories.environment(fleet.project)
        )


# -- transitions ---------------------------------------------------------------------------------------------


def test_promote_raises_the_share_without_moving_anyone_back_and_completes_with_a_release(fleet, version2):
    rollout = _start(fleet, version2)
    first = list(rollout.chosen)
    rollout = rollouts.rollout_promote(actor=fleet.team.editor, rollout=rollout)
    assert rollout.stage == 1 and rollout.percent == 50
    assert rollout.chosen[:5] == first and len(rollout.chosen) == 10
    rollout = rollouts.rollout_promote(actor=fleet.team.editor, rollout=rollout)
    assert rollout.state == RolloutState.COMPLETED
    assert rollout.release.version_id == version2.pk
    newest = Release.objects.filter(prompt_set=fleet.prompt_set).order_by("-id").first()
    assert newest.version_id == version2.pk
    actions = list(AuditEvent.objects.filter(action__startswith="rollout.").values_list("action", flat=True))
    assert sorted(actions) == ["rollout.complete", "rollout.promote", "rollout.start"]


def test_abort_publishes_the_previous_content_as_a_new_version(fleet, version2):
    rollout = _start(fleet, version2)
    rollout = rollouts.rollout_abort(actor=fleet.team.editor, rollout=rollout, reason="looks wrong")
    assert rollout.state == RolloutState.ABORTED and rollout.reason == "looks wrong"
    release = rollout.halt_release
    assert release.version.number == version2.number + 1
    assert release.version.digest == fleet.release.version.digest
    assert release.version.rollback_of_id == fleet.release.version_id
    with pytest.raises(Conflict):
        rollouts.rollout_promote(actor=fleet.team.editor, rollout=rollout)
    assert rollouts.load_overlay(fleet.token.environment_id) == ()


def test_pause_and_resume_are_audited_and_a_paused_rollout_does_not_promote(fleet, version2):
    rollout = _start(fleet, version2, stages="25:0,100", min_renders=1)
    rollout = rollouts.rollout_pause(actor=fleet.team.editor, rollout=rollout, reason="weekend")
    rollouts.health_source = lambda r, now: (Side(100, 0), Side(100, 0))
    try:
        verdict = rollouts.rollout_evaluate(Rollout.objects.get(pk=rollout.pk))
        assert verdict.outcome == "pass"
        assert Rollout.objects.get(pk=rollout.pk).state == RolloutState.PAUSED
        rollout = rollouts.rollout_resume(actor=fleet.team.editor, rollout=rollout)
        rollouts.rollout_evaluate(Rollout.objects.get(pk=rollout.pk))
        assert Rollout.objects.get(pk=rollout.pk).state == RolloutState.COMPLETED
    finally:
        rollouts.health_source = rollouts._default_health
    actions = set(AuditEvent.objects.filter(action__startswith="rollout.").values_list("action", flat=True))
    assert {"rollout.pause", "rollout.resume", "rollout.complete"} <= actions


# -- the evaluator -----------------------------------------------------------------------------------------------


def test_judge_waits_for_traffic_then_fails_or_passes():
    wait = rollouts.judge(canary=Side(10, 10), baseline=Side(100, 0), threshold=2, min_renders=20, bake_left=0)
    assert wait.outcome == "wait" and "not enough traffic yet" in wait.message
    fail = rollouts.judge(canary=Side(20, 20), baseline=Side(100, 1), threshold=2, min_renders=20, bake_left=300)
    assert fail.outcome == "fail" and "threshold" in fail.message
    baking = rollouts.judge(canary=Side(50, 1), baseline=Side(100, 1), threshold=2, min_renders=20, bake_left=30)
    assert baking.outcome == "wait" and "baking" in baking.message
    ok = rollouts.judge(canary=Side(50, 1), baseline=Side(100, 1), threshold=2, min_renders=20, bake_left=0)
    assert ok.outcome == "pass"


def test_the_evaluator_halts_a_failing_canary_and_records_why(fleet, version2):
    rollout = _start(fleet, version2, min_renders=5)
    rollouts.health_source = lambda r, now: (Side(40, 40), Side(300, 0))
    try:
        assert rollouts.rollouts_evaluate() == 1
    finally:
        rollouts.health_source = rollouts._default_health
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.HALTED
    assert "threshold" in rollout.reason
    assert rollout.halt_release.version.digest == fleet.release.version.digest
    assert rollout.evaluation["outcome"] == "fail"
    assert AuditEvent.objects.filter(action="rollout.halt").count() == 1


def test_the_evaluator_promotes_after_the_bake_time_and_waits_without_traffic(fleet, version2):
    rollout = _start(fleet, version2, stages="25:60,100", min_renders=5)
    now = timezone.now()
    verdict = rollouts.rollout_evaluate(Rollout.objects.get(pk=rollout.pk), now=now + timedelta(seconds=120))
    assert verdict.outcome == "wait" and "not enough traffic" in verdict.message  # no signals yet
    rollouts.health_source = lambda r, now: (Side(40, 0), Side(300, 0))
    try:
        assert rollouts.rollout_evaluate(Rollout.objects.get(pk=rollout.pk), now=now).outcome == "wait"
        rollouts.rollout_evaluate(Rollout.objects.get(pk=rollout.pk), now=now + timedelta(seconds=120))
    finally:
        rollouts.health_source = rollouts._default_health
    assert Rollout.objects.get(pk=rollout.pk).state == RolloutState.COMPLETED


def test_a_plain_publish_during_a_rollout_supersedes_it(fleet, version2):
    rollout = _start(fleet, version2)
    factories.make_release(version2, actor=fleet.team.editor)
    rollouts.rollout_evaluate(Rollout.objects.get(pk=rollout.pk))
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.ABORTED and "superseded" in rollout.reason


def test_new_instances_join_the_canary_up_to_the_share(fleet, version2):
    rollout = _start(fleet, version2)
    for n in range(20, 40):
        _checkin(fleet, f"host-{n:02d}")
    rollouts.rollout_evaluate(Rollout.objects.get(pk=rollout.pk))
    grown = Rollout.objects.get(pk=rollout.pk).chosen
    assert grown[:5] == rollout.chosen and len(grown) == 10


def _signals_checkin(live, instance_id: str, number: int, *, renders: int, errors: int = 0, guarded: int = 0):
    slug = live.prompt_set.slug
    item: dict = {"renders": renders}
    if errors:
        item["errors"] = {"missing_variables": errors}
        item["guarded"] = guarded
        item["problems"] = [
            {"prompt": "welcome.message", "kind": "missing_variables", "detail": "plan", "count": errors,
             "guarded": guarded}
        ]
    body = {
        "instance_id": instance_id,
        "process_id": 1,
        "versions": {slug: number},
        "signals": {slug: {str(number): item}},
    }
    return parse_checkin(json.dumps(body).encode())


def test_check_in_signals_feed_the_evaluator_and_a_failing_canary_halts(fleet, version2):
    from anvil_forge.distribution.services import instance_checkins_record
    from anvil_forge.health.models import ReleaseSignal

    rollout = _start(fleet, version2, min_renders=10)
    canary_id = rollout.chosen[0]
    other_id = next(i for i in INSTANCES if i not in rollout.chosen)
    now = timezone.now()
    instance_checkins_record(
        checkins=[
            (fleet.token, _signals_checkin(fleet, canary_id, version2.number, renders=12, errors=12), now),
            (fleet.token, _signals_checkin(fleet, other_id, 1, renders=100), now),
            # Not counted: the previous version on a canary instance, the canary version on another one.
            (fleet.token, _signals_checkin(fleet, rollout.chosen[1], 1, renders=50, errors=50), now),
            (fleet.token, _signals_checkin(fleet, INSTANCES[-1] if INSTANCES[-1] != other_id else INSTANCES[-2],
                                           version2.number, renders=0), now),
        ]
    )
    instance_checkins_record(checkins=[(fleet.token, _signals_checkin(fleet, other_id, 1, renders=100), now)])
    # The one record: the health app's counters, which hold the canary version although it is no release.
    assert ReleaseSignal.objects.filter(version=version2, instance__instance_id=canary_id).get().errors == 12
    canary, baseline = rollouts._default_health(Rollout.objects.get(pk=rollout.pk), timezone.now())
    assert (canary.renders, canary.errors, baseline.renders, baseline.errors) == (12, 12, 200, 0)
    rollouts.rollouts_evaluate()
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.HALTED
    assert "100.0%" in rollout.reason and rollout.evaluation["canary"]["errors"] == 12


def test_judge_fails_a_canary_whose_reported_outcomes_fail_more_once_there_are_enough():
    def judge(canary, baseline, bake_left=0):
        return rollouts.judge(canary=canary, baseline=baseline, threshold=5, min_renders=20, bake_left=bake_left)

    failing = judge(Side(100, 0, 10, 10), Side(1000, 0, 900, 100), bake_left=300)
    assert failing.outcome == "fail" and failing.message.startswith("canary failed outcomes 50.0% (10 of 20 reported)")
    assert "points above the previous version's 10.0%" in failing.message
    # Too few outcomes on the canary, or none reported by the others: judged on render errors alone.
    assert judge(Side(100, 0, 5, 10), Side(1000, 0, 900, 100)).outcome == "pass"
    assert judge(Side(100, 0, 0, 20), Side(1000, 0)).outcome == "pass"
    within = judge(Side(100, 0, 17, 3), Side(1000, 0, 900, 100))
    assert within.outcome == "pass" and "failed outcomes 15.0% vs 10.0%" in within.message


def test_failed_outcomes_reported_by_canary_hosts_halt_the_rollout(fleet, version2):
    from anvil_forge.distribution.services import instance_checkins_record

    rollout = _start(fleet, version2, min_renders=10)
    slug = fleet.prompt_set.slug
    now = timezone.now()

    def reporting(instance_id, number, ok, failed):
        outcomes = {"ok": ok, "failed": {"llm_error": failed}} if failed else {"ok": ok}
        body = {"instance_id": instance_id, "process_id": 1, "versions": {slug: number},
                "signals": {slug: {str(number): {"renders": 50, "outcomes": outcomes}}}}
        return (fleet.token, parse_checkin(json.dumps(body).encode()), now)

    others = [i for i in INSTANCES if i not in rollout.chosen]
    instance_checkins_record(
        checkins=[reporting(i, version2.number, 5, 5) for i in rollout.chosen]
        + [reporting(i, 1, 49, 1) for i in others]
    )
    rollouts.rollouts_evaluate()
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.HALTED and rollout.reason.startswith("canary failed outcomes 50.0%")
    assert rollout.evaluation["canary"]["outcomes_failed"] == 5 * len(rollout.chosen)
    assert rollout.evaluation["baseline"]["failure_rate"] == 2.0


def test_a_canary_the_render_guard_hides_from_the_hosts_still_halts(fleet, version2):
    from anvil_forge.distribution.services import instance_checkins_record

    rollout = _start(fleet, version2, min_renders=10)
    now = timezone.now()
    others = [i for i in INSTANCES if i not in rollout.chosen]
    instance_checkins_record(
        checkins=[(fleet.token, _signals_checkin(fleet, i, version2.number, renders=20, errors=4, guarded=4), now)
                  for i in rollout.chosen]
        + [(fleet.token, _signals_checkin(fleet, i, 1, renders=20), now) for i in others]
    )
    rollouts.rollouts_evaluate()
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.HALTED and rollout.reason.startswith("canary error rate 20.0%")


def test_a_canary_within_the_threshold_is_not_halted_by_the_shared_counters(fleet, version2):
    from anvil_forge.distribution.services import instance_checkins_record

    rollout = _start(fleet, version2, min_renders=10, stages="25:600,100")
    now = timezone.now()
    others = [i for i in INSTANCES if i not in rollout.chosen]
    instance_checkins_record(
        checkins=[(fleet.token, _signals_checkin(fleet, i, version2.number, renders=100, errors=1), now)
                  for i in rollout.chosen]
        + [(fleet.token, _signals_checkin(fleet, i, 1, renders=100, errors=1), now) for i in others]
    )
    verdict = rollouts.rollout_evaluate(Rollout.objects.get(pk=rollout.pk))
    assert verdict.outcome == "wait" and verdict.message.startswith("baking")
    assert (verdict.canary.renders, verdict.canary.errors) == (100 * len(rollout.chosen), len(rollout.chosen))
    assert Rollout.objects.get(pk=rollout.pk).state == RolloutState.RUNNING


def test_the_django_releases_view_answers_a_chosen_instance_with_the_canary_too(fleet, version2):
    rollout = _start(fleet, version2)
    rollouts.overlay_cache.forget()
    chosen = fleet.client().get("/api/v1/live/releases", HTTP_X_ANVIL_INSTANCE=rollout.chosen[0])
    other_id = next(i for i in INSTANCES if i not in rollout.chosen)
    other = fleet.client().get("/api/v1/live/releases", HTTP_X_ANVIL_INSTANCE=other_id)
    old = fleet.client().get("/api/v1/live/releases")
    assert json.loads(chosen.content)["releases"][0]["version"] == version2.number
    assert json.loads(other.content)["releases"][0]["version"] == 1
    assert json.loads(old.content)["releases"][0]["version"] == 1

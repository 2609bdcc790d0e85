"""Check-in ``signals`` (issue 16): parsed with strict bounds, summed per release, instance and minute through
the batch writer, read by ``release_health`` and shown on the release page as warnings."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from anvil_forge.distribution.checkin import CheckInError, parse_checkin
from anvil_forge.distribution.checkin_writer import _merged
from anvil_forge.distribution.services import instance_checkins_record
from anvil_forge.health.models import ReleaseProblem, ReleaseSignal
from anvil_forge.health.selectors import release_health, release_health_rows, release_warnings


def parse(**fields):
    return parse_checkin(json.dumps({"instance_id": "app-1", "process_id": 7, **fields}).encode())


def guarded_signals(slug, version="1", *, renders=10, guarded=3, **more):
    item = {
        "renders": renders,
        "errors": {"missing_variables": guarded},
        "guarded": guarded,
        "problems": [
            {"prompt": "welcome.message", "kind": "missing_variables", "detail": "plan", "count": guarded,
             "guarded": guarded}
        ],
        **more,
    }
    return {slug: {version: item}}


def test_signals_are_parsed_per_set_and_version():
    checkin = parse(
        signals={
            "core": {
                "2": {
                    "renders": 40,
                    "errors": {"missing_variables": 2, "render_limit": 0},
                    "fallbacks": 1,
                    "guarded": 2,
                    "outcomes": {"ok": 30, "failed": {"llm_error": 3}},
                    "problems": [
                        {"prompt": "welcome.message", "kind": "missing_variables", "detail": "plan", "count": 2,
                         "guarded": 2}
                    ],
                }
            }
        }
    )
    signals = checkin.signals["core"][2]
    assert (signals.renders, signals.fallbacks, signals.guarded, signals.outcomes_ok) == (40, 1, 2, 30)
    assert signals.errors == {"missing_variables": 2}
    assert signals.outcomes_failed == {"llm_error": 3}
    assert signals.problems[0].detail == "plan" and signals.error_count == 2


def test_absent_or_null_signals_are_none():
    assert parse().signals == {} and parse(signals=None).signals == {}


@pytest.mark.parametrize(
    ("signals", "message"),
    [
        ([], "signals: must be an object"),
        ({"Core": {}}, "signals.Core: is not a set slug"),
        ({"core": {"0": {}}}, "signals.core.0: is not a version number"),
        ({"core": {"v2": {}}}, "signals.core.v2: is not a version number"),
        ({"core": {"2": {"renders": -1}}}, "signals.core.2.renders: must be a whole number from 0"),
        ({"core": {"2": {"renders": 1.5}}}, "signals.core.2.renders: must be a whole number"),
        ({"core": {"2": {"renders": True}}}, "signals.core.2.renders: must be a whole number"),
        ({"core": {"2": {"renders": 10**13}}}, "signals.core.2.renders: must be a whole number from 0 to"),
        ({"core": {"2": {"errors": {"oops": 1}}}}, "signals.core.2.errors.oops: is not one of missing_variables"),
        ({"core": {"2": {"colour": 1}}}, "signals.core.2.colour: is not a signal"),
        ({"core": {"2": {"outcomes": {"ok": 1, "meh": 2}}}}, "signals.core.2.outcomes: must be an object"),
        ({"core": {"2": {"outcomes": {"failed": {"Bad Kind": 1}}}}}, "signals.core.2.outcomes.failed.Bad Kind: a kind"),
        ({"core": {str(n): {} for n in range(1, 22)}}, "signals.core: must be an object of version number"),
        ({"core": {"2": {"problems": [{"prompt": "welcome.message", "kind": "missing_variables", "count": 1,
                                       "guarded": 2}]}}}, "signals.core.2.problems[0].guarded: must not be more"),
        ({"core": {"2": {"problems": [{"prompt": "Welcome", "kind": "missing_variables"}]}}},
         "signals.core.2.problems[0].prompt: is not a prompt id"),
        ({"core": {"2": {"problems": [{"prompt": "a.b", "kind": "x"}]}}}, "signals.core.2.problems[0].kind"),
        ({"core": {"2": {"problems": [{"prompt": "a.b", "kind": "template_error", "detail": "x" * 201}]}}},
         "signals.core.2.problems[0].detail"),
    ],
)
def test_malformed_signals_are_refused_naming_the_field(signals, message):
    with pytest.raises(CheckInError) as refused:
        parse(signals=signals)
    assert str(refused.value).startswith(message), str(refused.value)


def test_too_many_versions_in_all_are_refused():
    many = {f"set-{s}": {str(n): {"renders": 1} for n in range(1, 21)} for s in range(6)}
    with pytest.raises(CheckInError, match="signals: at most 100 versions in all"):
        parse(signals=many)


def test_two_check_ins_of_one_process_in_a_batch_have_their_signals_summed():
    older = parse(signals=guarded_signals("core", renders=10, guarded=3))
    newer = parse(signals={"core": {"1": {"renders": 5}, "2": {"renders": 1}}})
    merged = _merged(older, newer).signals
    assert merged["core"][1].renders == 15 and merged["core"][1].guarded == 3
    assert merged["core"][1].problems[0].count == 3
    assert merged["core"][2].renders == 1


def test_signals_are_summed_per_release_instance_and_minute_through_the_batch_writer(live):
    slug = live.prompt_set.slug
    now = timezone.now()
    first = parse(versions={slug: 1}, signals=guarded_signals(slug, renders=10, guarded=3))
    second = parse(versions={slug: 1}, signals=guarded_signals(slug, renders=5, guarded=1))
    other = parse(instance_id="app-2", versions={slug: 1}, signals={slug: {"1": {"renders": 20}}})
    instance_checkins_record(checkins=[(live.token, first, now), (live.token, other, now)])  # new processes
    instance_checkins_record(checkins=[(live.token, second, now)])  # the periodic (upsert) path
    rows = {row.instance.instance_id: row for row in ReleaseSignal.objects.select_related("instance")}
    assert rows["app-1"].renders == 15 and rows["app-1"].guarded == 4 and rows["app-1"].missing_variables == 4
    assert rows["app-2"].renders == 20 and rows["app-2"].errors == 0
    [problem] = ReleaseProblem.objects.all()
    assert (problem.prompt, problem.kind, problem.detail, problem.count, problem.guarded) == (
        "welcome.message", "missing_variables", "plan", 4, 4
    )
    later = now + timedelta(minutes=2)
    instance_checkins_record(checkins=[(live.token, parse(versions={slug: 1}, signals={slug: {"1": {"renders": 1}}}),
                                        later)])
    assert ReleaseSignal.objects.filter(instance__instance_id="app-1").count() == 2

    health = release_health(live.release)
    assert (health.canary.renders, health.canary.errors, health.canary.instances) == (36, 4, 2)
    split = release_health(live.release, canary=["app-1"])
    assert (split.canary.renders, split.canary.errors, split.canary.guarded) == (16, 4, 4)
    assert split.canary.rate == pytest.approx(4 / 16)
    assert (split.rest.renders, split.rest.errors, split.rest.rate, split.rest.instances) == (20, 0, 0.0, 1)
    recent = release_health(live.release, canary=["app-1"], since=later)
    assert recent.canary.renders == 1 and recent.rest.renders == 0
    rows = release_health_rows(environment=live.release.environment, prompt_set=live.prompt_set, versions=[1])
    assert rows == [
        {"version": 1, "instance_id": "app-1", "renders": 16, "errors": 4, "guarded": 4, "fallbacks": 0,
         "outcomes_ok": 0, "outcomes_failed": 0},
        {"version": 1, "instance_id": "app-2", "renders": 20, "errors": 0, "guarded": 0, "fallbacks": 0,
         "outcomes_ok": 0, "outcomes_failed": 0},
    ]


def test_signals_of_a_version_never_released_in_the_environment_are_not_recorded(live):
    slug = live.prompt_set.slug
    instance_checkins_record(
        checkins=[(live.token, parse(versions={slug: 1}, signals={slug: {"9": {"renders": 3}}}), timezone.now())]
    )
    assert not ReleaseSignal.objects.exists()


def test_the_release_page_warns_when_instances_served_the_previous_text(live):
    slug = live.prompt_set.slug
    now = timezone.now()
    outcome = {"outcomes": {"ok": 1, "failed": {"llm_error": 2}}}
    batch = [
        (live.token, parse(instance_id=f"app-{n}", versions={slug: 1}, signals=guarded_signals(slug, **outcome)), now)
        for n in range(3)
    ]
    instance_checkins_record(checkins=batch)
    assert release_warnings(live.release) == [
        "3 instances served the previous text for welcome.message: missing variable plan",
        "3 instances reported failed outcomes: llm_error",
    ]
    team = live.team
    viewer = Client()
    viewer.force_login(team.viewer)
    project = live.project
    url = f"/o/{team.organisation.slug}/p/{project.slug}/s/{slug}/releases/{live.release.pk}/"
    body = viewer.get(url).content.decode()
    assert "3 instances served the previous text for welcome.message: missing variable plan" in body
    assert "9 render errors in 30 renders on 3 instances" in body


def test_a_release_without_signals_shows_no_warning(live):
    team = live.team
    viewer = Client()
    viewer.force_login(team.viewer)
    url = (
        f"/o/{team.organisation.slug}/p/{live.project.slug}/s/{live.prompt_set.slug}/releases/{live.release.pk}/"
    )
    response = viewer.get(url)
    assert response.status_code == 200 and "release-signals" not in response.content.decode()


def test_the_checkin_endpoint_takes_signals_and_refuses_bad_ones(live):
    slug = live.prompt_set.slug
    body = {"instance_id": "app-1", "process_id": 3, "versions": {slug: 1}, "signals": {slug: {"1": {"renders": 4}}}}
    response = live.client().post("/api/v1/live/checkin", json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    assert ReleaseSignal.objects.get().renders == 4
    body["signals"] = {slug: {"1": {"renders": "many"}}}
    response = live.client().post("/api/v1/live/checkin", json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"signals.{slug}.1.renders: must be a whole number")


def test_minute_rows_older_than_the_retention_are_pruned(live):
    from anvil_forge.health.services import SIGNAL_RETENTION, release_signals_prune

    slug = live.prompt_set.slug
    now = timezone.now()
    old = now - SIGNAL_RETENTION - timedelta(minutes=5)
    checkin = parse(versions={slug: 1}, signals={slug: {"1": {"renders": 2}}})
    instance_checkins_record(checkins=[(live.token, checkin, now)])
    row = ReleaseSignal.objects.get()
    ReleaseSignal.objects.create(
        environment=row.environment, version=row.version, instance=row.instance, bucket=old, renders=5
    )
    assert release_signals_prune(now=now, force=True) == 1
    assert ReleaseSignal.objects.get().renders == 2

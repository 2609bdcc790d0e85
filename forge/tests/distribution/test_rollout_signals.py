"""Canary signals have one record (issue 16): the health app's per-version, per-instance, per-minute counters.

Both check-in paths (the ASGI route with its batch writer, and the Django view) record the same counters, the
canary version's included; the rollout page and the release page of the previous release warn of what the
canary instances report.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from django.test import Client
from django.utils import timezone

from anvil_forge.distribution import checkin_api, rollouts
from anvil_forge.distribution.checkin_writer import CheckinWriter, _Pending
from anvil_forge.distribution.rollout_models import Rollout
from anvil_forge.distribution.tokens import token_hash
from anvil_forge.health.models import ReleaseProblem, ReleaseSignal
from forge.tests import factories

SIGNAL_FIELDS = (
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


@pytest.fixture
def canary(live):
    """Version 2 of the set on a canary (a rollout with one instance chosen) in production."""
    version2 = factories.make_approved_version(live.prompt_set, author=live.team.editor, reviewer=live.team.reviewer)
    rollout = rollouts.rollout_start(
        actor=live.team.editor,
        version=version2,
        environment=factories.environment(live.project),
        stages="50:600,100",
        min_renders=1000,
    )
    Rollout.objects.filter(pk=rollout.pk).update(chosen=["canary-1"])
    rollouts.overlay_cache.forget()
    return Rollout.objects.select_related("version", "previous_release__version").get(pk=rollout.pk)


def _body(live, instance_id: str, number: int) -> bytes:
    slug = live.prompt_set.slug
    signals = {
        slug: {
            str(number): {
                "renders": 10,
                "errors": {"missing_variables": 3, "template_error": 1},
                "fallbacks": 1,
                "guarded": 2,
                "outcomes": {"ok": 4, "failed": {"llm_error": 2}},
                "problems": [
                    {"prompt": "welcome.message", "kind": "missing_variables", "detail": "plan", "count": 3,
                     "guarded": 2},
                    {"prompt": "welcome.message", "kind": "template_error", "detail": "boom", "count": 1},
                ],
            },
            "1": {"renders": 5},
        }
    }
    return json.dumps(
        {"instance_id": instance_id, "process_id": 1, "versions": {slug: number}, "signals": signals}
    ).encode()


def _post_fast(live, body: bytes, monkeypatch) -> tuple[int, dict]:
    """Through the ASGI route, then written as its writer thread writes (``CheckinWriter._write``), here."""
    submitted: list[_Pending] = []

    class Capture:
        def submit(self, *, token, checkin, received_at) -> bool:
            submitted.append(_Pending(token, checkin, received_at))
            return True

    monkeypatch.setattr(checkin_api, "checkin_writer", Capture())
    monkeypatch.setattr(rollouts, "OVERLAY_MAX_AGE", 60.0)
    checkin_api._tokens[token_hash(live.raw)] = (time.monotonic(), live.token)  # the route's token cache
    rollouts.overlay_sync(live.token.environment_id)  # read here: the test's transaction is this thread's
    sent: list[dict] = []
    incoming = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        return incoming.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": checkin_api.PATH,
        "client": ("127.0.0.1", 5000),
        "headers": [(b"authorization", f"Bearer {live.raw}".encode()), (b"content-length", b"%d" % len(body))],
    }
    asyncio.run(checkin_api.live_checkin(scope, receive, send))
    CheckinWriter()._write(submitted)
    return sent[0]["status"], json.loads(sent[1]["body"])


def _post_django(live, body: bytes) -> tuple[int, dict]:
    response = live.client().post("/api/v1/live/checkin", body, content_type="application/json")
    return response.status_code, response.json()


def _counters(instance_id: str) -> tuple[dict, dict]:
    signals = {
        row.version.number: tuple(getattr(row, name) for name in SIGNAL_FIELDS)
        for row in ReleaseSignal.objects.filter(instance__instance_id=instance_id).select_related("version")
    }
    problems = {
        (row.version.number, row.prompt, row.kind, row.detail): (row.count, row.guarded)
        for row in ReleaseProblem.objects.filter(instance__instance_id=instance_id).select_related("version")
    }
    return signals, problems


def test_both_check_in_paths_record_the_same_counters_canary_version_included(live, canary, monkeypatch):
    number = canary.version.number
    for _ in range(2):  # a new process (the full path), then a periodic check-in (the batch's upsert)
        fast = _post_fast(live, _body(live, "fast-1", number), monkeypatch)
        django = _post_django(live, _body(live, "django-1", number))
        assert fast[0] == django[0] == 200
        # Both answers ask for the rollout's shorter check-in interval.
        assert fast[1]["checkin_interval"] == django[1]["checkin_interval"] == rollouts.ROLLOUT_CHECKIN_INTERVAL
    fast_counters, django_counters = _counters("fast-1"), _counters("django-1")
    assert fast_counters == django_counters
    signals, problems = fast_counters
    assert signals == {number: (20, 6, 0, 2, 0, 2, 4, 8, 4), 1: (10, 0, 0, 0, 0, 0, 0, 0, 0)}
    assert problems[(number, "welcome.message", "missing_variables", "plan")] == (6, 4)
    assert problems[(number, "", "outcome", "llm_error")] == (4, 0)


def test_the_rollout_and_release_pages_warn_of_what_the_canary_instances_report(live, canary):
    from anvil_forge.distribution.services import instance_checkins_record

    number = canary.version.number
    checkin = checkin_api.parse_checkin(_body(live, "canary-1", number))
    not_chosen = checkin_api.parse_checkin(_body(live, "other-1", number))  # the canary version elsewhere: not shown
    instance_checkins_record(checkins=[(live.token, checkin, timezone.now()), (live.token, not_chosen, timezone.now())])
    viewer = Client()
    viewer.force_login(live.team.viewer)
    base = f"/o/{live.team.organisation.slug}/p/{live.project.slug}/s/{live.prompt_set.slug}/"
    rollout_page = viewer.get(f"{base}rollouts/{canary.pk}/").content.decode()
    release_page = viewer.get(f"{base}releases/{canary.previous_release_id}/").content.decode()
    for page in (rollout_page, release_page):
        assert f"Canary instances report problems with version {number}" in page
        assert "1 instance served the previous text for welcome.message: missing variable plan" in page
        assert "1 instance failed to render welcome.message: template error: boom" in page
        assert "1 instance reported failed outcomes: llm_error" in page
        assert "4 render errors in 10 renders on 1 canary instance; 2 served the previous version" in page
    # The previous release's own warnings are its own version's: version 1 had no problem.
    assert "Instances report problems with this version" not in release_page


def test_a_canary_without_problems_adds_no_warning(live, canary):
    viewer = Client()
    viewer.force_login(live.team.viewer)
    base = f"/o/{live.team.organisation.slug}/p/{live.project.slug}/s/{live.prompt_set.slug}/"
    for url in (f"{base}rollouts/{canary.pk}/", f"{base}releases/{canary.previous_release_id}/"):
        response = viewer.get(url)
        assert response.status_code == 200 and "data-canary-warnings" not in response.content.decode()

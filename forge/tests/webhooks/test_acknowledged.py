"""``release.acknowledged``: recorded once, when every instance that was running at publish time runs the release."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from anvil_forge.audit.models import AuditEvent
from anvil_forge.distribution import services as distribution
from anvil_forge.distribution.checkin import CheckIn
from anvil_forge.distribution.models import LiveInstance, LiveProcess
from anvil_forge.webhooks import acknowledged, services
from anvil_forge.webhooks.models import Delivery, ReleaseAcknowledged
from forge.tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _forget(monkeypatch):
    acknowledged._done.clear()
    acknowledged._pending.clear()
    monkeypatch.setattr(acknowledged, "CHECK_INTERVAL", 0.0)  # no throttle unless a test asks for one
    monkeypatch.setattr(acknowledged, "CHECK_SHARE", 0.0)
    monkeypatch.setattr(acknowledged, "_last_sweep", time.monotonic())  # no sweep unless a test asks for one
    yield
    acknowledged._done.clear()


@pytest.fixture
def token(team, project):
    made, _ = distribution.token_create(
        actor=team.owner, project=project, environment=factories.environment(project), kind="live", name="t"
    )
    return made


def checkin(token, instance_id, pid=1, *, versions, mode="ACCEPTING", pins=None, goodbye=False):
    distribution.instance_checkin(
        token=token,
        checkin=CheckIn(
            instance_id=instance_id, name=instance_id, host="h", process_count=1, client_version="0.2.0", mode=mode,
            pins=pins or {}, versions=versions, usage={}, process_id=pid, goodbye=goodbye,
        ),
    )


def publish(prompt_set, team, number):
    version = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    assert version.number == number
    return factories.make_release(version, actor=team.editor)


def events():
    return list(AuditEvent.objects.filter(action="release.acknowledged"))


def test_fired_once_when_the_last_instance_running_at_publish_time_applies_it(
    team, token, prompt_set, django_capture_on_commit_callbacks
):
    slug = prompt_set.slug
    first = publish(prompt_set, team, 1)
    for name in ("a", "b"):
        checkin(token, name, versions={slug: 1})
    checkin(token, "b", 2, versions={slug: 1})  # b has two processes
    second = publish(prompt_set, team, 2)

    checkin(token, "a", versions={slug: 2})
    checkin(token, "b", 1, versions={slug: 2})
    assert acknowledged.release_check(second.pk) is None  # b's second process still runs v1
    with django_capture_on_commit_callbacks(execute=True):
        checkin(token, "b", 2, versions={slug: 2})
    assert acknowledged._pending == {second.pk}  # queued for the drainer, not judged in the writer
    assert acknowledged.check_pending() == 1

    [event] = events()
    assert event.object_id == str(second.pk) and event.project_id == prompt_set.project_id
    assert event.data["instances"] == 2 and event.data["version"] == 2 and event.data["refusing"] == 0
    acknowledged._done.clear()  # as another process would: the row, not the memory, holds it to once
    assert acknowledged.release_check(second.pk) is None
    assert len(events()) == 1 and ReleaseAcknowledged.objects.get().release_id == second.pk
    assert acknowledged.release_check(first.pk) is None  # superseded: never


def test_an_instance_started_after_the_publish_or_gone_offline_does_not_hold_it_up(team, token, prompt_set):
    slug = prompt_set.slug
    publish(prompt_set, team, 1)
    checkin(token, "old", versions={slug: 1})
    checkin(token, "gone", versions={slug: 1})
    release = publish(prompt_set, team, 2)
    checkin(token, "late", versions={slug: 1})  # started after the publish, from an old cache
    LiveInstance.objects.filter(instance_id="late").update(first_seen_at=timezone.now() + timedelta(seconds=1))
    checkin(token, "gone", goodbye=True, versions={slug: 1})
    checkin(token, "old", versions={slug: 2})

    event = acknowledged.release_check(release.pk)

    assert event is not None and event.data["instances"] == 1 and event.data["offline"] == 1


def test_a_frozen_instance_is_counted_as_refusing_and_nobody_applying_fires_nothing(team, token, prompt_set):
    slug = prompt_set.slug
    publish(prompt_set, team, 1)
    checkin(token, "frozen", versions={slug: 1}, mode="FROZEN")
    release = publish(prompt_set, team, 2)
    assert acknowledged.release_check(release.pk) is None  # only a refusing instance: nobody applied it

    checkin(token, "new", versions={slug: 1})
    LiveInstance.objects.filter(instance_id="new").update(first_seen_at=release.published_at)
    assert acknowledged.release_check(release.pk) is None  # behind
    checkin(token, "new", versions={slug: 2})
    event = acknowledged.release_check(release.pk)
    assert event is not None and event.data["instances"] == 1 and event.data["refusing"] == 1


def test_a_webhook_that_wants_it_gets_a_delivery_with_a_chat_text(team, token, prompt_set):
    services.webhook_create(
        actor=team.owner, organisation=team.organisation, name="w", url="https://hooks.example.com/a",
        events=["release.acknowledged"], payload_format="chat",
    )
    slug = prompt_set.slug
    publish(prompt_set, team, 1)
    checkin(token, "a", versions={slug: 1})
    release = publish(prompt_set, team, 2)
    checkin(token, "a", versions={slug: 2})
    acknowledged.release_check(release.pk)

    [delivery] = Delivery.objects.all()
    assert delivery.action == "release.acknowledged"
    from anvil_forge.webhooks.events import payload_for

    body = payload_for(delivery.event, chat=True, delivery_id="x")
    assert "saw every instance apply" in body["text"] and body["data"]["instances"] == 1


def test_the_last_instance_behind_ageing_out_without_a_goodbye_is_found_by_the_sweep(team, token, prompt_set):
    slug = prompt_set.slug
    publish(prompt_set, team, 1)
    checkin(token, "done", versions={slug: 1})
    checkin(token, "crashed", versions={slug: 1})
    release = publish(prompt_set, team, 2)
    checkin(token, "done", versions={slug: 2})
    assert acknowledged.release_check(release.pk) is None  # "crashed" is behind
    LiveProcess.objects.filter(instance__instance_id="crashed").update(expires_at=timezone.now())  # aged out

    assert acknowledged.check_pending() == 0  # nothing prompts a check...
    acknowledged._last_sweep = 0.0  # ...until the sweep (every SWEEP_SECONDS)
    assert acknowledged.check_pending() == 1
    [event] = events()
    assert event.object_id == str(release.pk) and event.data["offline"] == 1 and event.data["instances"] == 1
    acknowledged._last_sweep = 0.0
    assert acknowledged.check_pending() == 0  # swept again: acknowledged already


def test_a_release_is_checked_at_most_once_per_interval_and_the_drainer_is_told_when_next(team, token, prompt_set,
                                                                                           monkeypatch):
    monkeypatch.setattr(acknowledged, "CHECK_INTERVAL", 30.0)
    monkeypatch.setattr(acknowledged, "_due_at", {})
    slug = prompt_set.slug
    publish(prompt_set, team, 1)
    checkin(token, "a", versions={slug: 1})
    checkin(token, "b", versions={slug: 1})
    release = publish(prompt_set, team, 2)
    checkin(token, "a", versions={slug: 2})
    acknowledged.note([release.pk])
    assert acknowledged.check_pending() == 0 and acknowledged.next_check_in() is None  # b is behind
    checkin(token, "b", versions={slug: 2})
    acknowledged.note([release.pk])

    assert acknowledged.check_pending() == 0  # checked a moment ago: put off
    assert acknowledged._pending == {release.pk} and 25 < acknowledged.next_check_in() <= 30
    acknowledged._due_at[release.pk] -= 30
    assert acknowledged.next_check_in() == 0.0
    assert acknowledged.check_pending() == 1 and not acknowledged._pending


def test_a_slow_check_puts_the_next_one_off_ten_times_as_long(team, token, prompt_set, monkeypatch):
    monkeypatch.setattr(acknowledged, "CHECK_INTERVAL", 1.0)
    monkeypatch.setattr(acknowledged, "CHECK_SHARE", 10.0)
    monkeypatch.setattr(acknowledged, "_due_at", {})
    real = acknowledged.release_check

    def slow(release_id):
        time.sleep(0.3)
        return real(release_id)

    monkeypatch.setattr(acknowledged, "release_check", slow)
    release = publish(prompt_set, team, 1)
    acknowledged.note([release.pk])
    acknowledged.check_pending()
    acknowledged.note([release.pk])
    assert 2.9 < acknowledged.next_check_in() < 6.0  # ten times the 0.3 s (and a little) it took

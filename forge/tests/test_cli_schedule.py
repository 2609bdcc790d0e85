"""``anvil-forge publish ... --at ISO8601``: schedules instead of publishing (run in-process)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from anvil_forge import cli
from anvil_forge.distribution.models import Release, ScheduledRelease, ScheduleState

pytestmark = pytest.mark.django_db

PUBLISH = ("publish", "acme/support-bot/core", "--version", "2", "--environment", "production", "--as", "editor")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_publish_at_schedules_the_release_and_publishes_nothing_now(capsys):
    run(capsys, "demo")
    releases = Release.objects.count()
    at = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)

    code, out, err = run(capsys, *PUBLISH, "--at", at.strftime("%Y-%m-%dT%H:%M:%S+02:00"))

    assert (code, err) == (0, "")
    scheduled = ScheduledRelease.objects.get()
    assert scheduled.at == at - timedelta(hours=2) and scheduled.state == ScheduleState.PENDING
    assert f"at {scheduled.at:%Y-%m-%d %H:%M:%S} UTC" in out
    assert Release.objects.count() == releases


def test_publish_at_without_an_offset_is_utc_and_garbage_is_one_clear_line(capsys):
    run(capsys, "demo")
    at = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)

    assert run(capsys, *PUBLISH, "--at", at.strftime("%Y-%m-%dT%H:%M:%S"))[0] == 0
    assert ScheduledRelease.objects.get().at == at

    code, _, err = run(capsys, *PUBLISH, "--at", "tomorrow")
    assert code == 1 and "not an ISO 8601 time" in err
    code, _, err = run(capsys, *PUBLISH, "--at", "2020-01-01T00:00Z")
    assert code == 1 and "has passed" in err

"""Scheduled publishing with real FORGE processes: a release scheduled with ``anvil-forge publish --at`` is
published once at its time, even by two FORGE processes sharing one PostgreSQL database, reaches a LIVE client,
and a FORGE that was down at the time publishes it when it starts again and audits how late it was.

Demo data: set ``core`` version 1 is live in production, version 2 is approved and waiting.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.forge_process import ForgeProcess, postgres_url
from tests.integration.test_client_live import V2, eventually, greeting, live_token

pytestmark = pytest.mark.integration

FAST = {"ANVIL_RELEASE_POLL_SECONDS": "0.2", "ANVIL_STREAM_HEARTBEAT_SECONDS": "1", "ANVIL_SCHEDULER_SECONDS": "0.1"}


def _rows(forge: ForgeProcess, sql: str) -> list[tuple[Any, ...]]:
    url = forge.database_url
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"), timeout=10)) as conn:
            return conn.execute(sql).fetchall()
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def _scheduled(forge: ForgeProcess) -> list[tuple[Any, ...]]:
    return _rows(forge, "SELECT state, failure_reason FROM distribution_scheduledrelease ORDER BY id")


def _publish_events(forge: ForgeProcess) -> list[dict[str, Any]]:
    rows = _rows(forge, "SELECT data FROM audit_auditevent WHERE action = 'release.publish' ORDER BY id")
    return [row[0] if isinstance(row[0], dict) else json.loads(row[0]) for row in rows]


def _releases_of_v2(forge: ForgeProcess) -> int:
    return _rows(
        forge,
        "SELECT COUNT(*) FROM distribution_release r JOIN prompts_promptsetversion v ON v.id = r.version_id "
        "WHERE v.number = 2",
    )[0][0]


def _schedule(forge: ForgeProcess, seconds: float) -> datetime:
    at = datetime.now(UTC) + timedelta(seconds=seconds)
    out = forge.cli(
        "publish",
        "acme/support-bot/core",
        "--version",
        "2",
        "--environment",
        "production",
        "--as",
        "editor",
        "--at",
        at.isoformat(),
    )
    assert "Scheduled" in out, out
    return at


@pytest.mark.postgres
@pytest.mark.skipif(postgres_url() is None, reason="two FORGE processes share a database only on PostgreSQL")
def test_two_forge_processes_publish_a_scheduled_release_exactly_once_and_a_client_gets_it(
    make_forge: Callable[..., ForgeProcess], tmp_path: Path
) -> None:
    import anvil_client

    first = make_forge(env=FAST)
    second = make_forge(env=FAST, database_url=first.database_url)
    client = anvil_client.Client(
        forge_url=second.url,
        token=live_token(first),
        cache_dir=tmp_path / "cache",
        heartbeat_interval=1,
        backoff_initial=0.1,
        backoff_max=0.5,
        state_check_interval=0.2,
        poll_interval=30,  # the stream brings it, not polling
    )
    try:
        assert eventually(lambda: client.status()["connected"])
        at = _schedule(first, 10)  # the command takes a few seconds to start on a busy machine

        assert eventually(lambda: greeting(client) == V2, 25), client.status()
        received = datetime.now(UTC)
        time.sleep(1.5)  # both schedulers tick many times more

        assert _scheduled(first) == [("published", "")]
        assert _releases_of_v2(first) == 1
        scheduled = [event for event in _publish_events(first) if event.get("scheduled")]
        assert len(scheduled) == 1 and scheduled[0]["version"] == 2 and "late_seconds" not in scheduled[0]
        assert at <= received < at + timedelta(seconds=5)
    finally:
        client.close()


def test_a_forge_down_at_the_time_publishes_when_it_starts_and_says_how_late(
    make_forge: Callable[..., ForgeProcess],
) -> None:
    forge = make_forge(env=FAST)
    at = _schedule(forge, 8)
    forge.stop()
    # The time passes while no FORGE runs (late means more than 5 s after it).
    time.sleep(max(0.0, (at + timedelta(seconds=7) - datetime.now(UTC)).total_seconds()))
    assert _scheduled(forge) == [("pending", "")]

    forge.start()

    assert eventually(lambda: _scheduled(forge) == [("published", "")], 10), _scheduled(forge)
    event = [event for event in _publish_events(forge) if event.get("scheduled")]
    assert len(event) == 1 and event[0]["late_seconds"] >= 6
    assert _releases_of_v2(forge) == 1
    assert "late" in forge.log()


def test_a_scheduled_release_reaches_a_client_of_the_same_forge_at_its_time(
    make_forge: Callable[..., ForgeProcess], tmp_path: Path
) -> None:
    import anvil_client

    # The periodic check is set to a minute: only the scheduler's own announcement can deliver in time.
    forge = make_forge(env={**FAST, "ANVIL_RELEASE_POLL_SECONDS": "60"})
    client = anvil_client.Client(
        forge_url=forge.url,
        token=live_token(forge),
        cache_dir=tmp_path / "cache",
        heartbeat_interval=1,
        backoff_initial=0.1,
        backoff_max=0.5,
        state_check_interval=0.2,
        poll_interval=30,
    )
    try:
        assert eventually(lambda: client.status()["connected"])
        at = _schedule(forge, 8)

        assert eventually(lambda: greeting(client) == V2, 20), client.status()

        assert at <= datetime.now(UTC) < at + timedelta(seconds=4)
        assert _scheduled(forge) == [("published", "")]
    finally:
        client.close()

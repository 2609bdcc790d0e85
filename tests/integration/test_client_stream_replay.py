"""The LIVE client's stream reader against a real FORGE's bytes: what the FORGE sends on connect (the response
head, the ``retry:`` hint and the replayed releases, written together) is delivered without waiting for more.

The heartbeat is set far beyond the tests' patience, so only the replay itself can bring a release in time.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import anvil_client
from anvil_client import _http
from tests.forge_process import ForgeProcess
from tests.integration.test_client_live import V1, V2, eventually, greeting, live_token, publish

pytestmark = pytest.mark.integration

QUIET = {"ANVIL_RELEASE_POLL_SECONDS": "0.2", "ANVIL_STREAM_HEARTBEAT_SECONDS": "60"}


class LateReader(socket.socket):
    """A socket whose first read comes late (a busy host process): whatever the FORGE wrote is in by then."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if not getattr(self, "_waited", False):
            self._waited = True
            time.sleep(0.5)
        return super().recv(bufsize, flags)


@pytest.fixture
def quiet_forge(make_forge: Callable[..., ForgeProcess]) -> ForgeProcess:
    return make_forge(env=QUIET)


def test_the_releases_replayed_on_connect_come_with_the_first_poll(
    quiet_forge: ForgeProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = live_token(quiet_forge)
    connect = _http.open_connection
    monkeypatch.setattr(
        _http, "open_connection", lambda *args: LateReader(fileno=connect(*args).detach())
    )
    # No Last-Event-ID: the FORGE replays the current release (demo: core version 1) at once.
    stream = _http.EventStream(
        quiet_forge.url + "/api/v1/live/stream", token=token, last_event_id=None, connect_timeout=5
    )
    try:
        started = time.monotonic()
        events = list(stream.poll(2.0))
        assert [(e.event, json.loads(e.data)["set"], json.loads(e.data)["version"]) for e in events] == [
            ("release", "core", 1)
        ]
        assert time.monotonic() - started < 1.0
        assert stream.retry_ms is not None
        assert stream.last_event_id == events[0].id
    finally:
        stream.close()


def test_a_release_published_while_the_forge_was_down_is_taken_as_soon_as_it_returns(
    quiet_forge: ForgeProcess, tmp_path: Path
) -> None:
    client = anvil_client.Client(
        forge_url=quiet_forge.url,
        token=live_token(quiet_forge),
        cache_dir=tmp_path / "cache",
        heartbeat_interval=60,
        poll_interval=600,
        backoff_initial=0.1,
        backoff_max=0.5,
        state_check_interval=0.2,
    )
    try:
        assert greeting(client) == V1
        assert eventually(lambda: client.status()["connected"])
        quiet_forge.kill()
        assert eventually(lambda: not client.status()["connected"])
        publish(quiet_forge, 2)  # writes the database; no FORGE process hears it
        quiet_forge.start()
        back = time.monotonic()
        taken: Any = eventually(lambda: greeting(client) == V2, 10)
        assert taken, client.status()
        assert time.monotonic() - back < 3, "the replayed release waited for something after the reconnect"
    finally:
        client.close()

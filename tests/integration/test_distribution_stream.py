"""The LIVE API and stream against a real FORGE (uvicorn on a loopback port), with real HTTP clients.

Publishes and revocations go through the ``anvil-forge`` command, another process: on SQLite the FORGE
hears of them through its periodic check (``ANVIL_RELEASE_POLL_SECONDS``, set short here).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from anvil_client.bundle import load_bundle

pytestmark = pytest.mark.integration

FAST = {"ANVIL_RELEASE_POLL_SECONDS": "0.2", "ANVIL_STREAM_HEARTBEAT_SECONDS": "1"}


@dataclass
class Event:
    event: str
    id: str | None
    data: str
    at: float

    def json(self) -> dict:
        return json.loads(self.data)


@dataclass
class SSEStream:
    """A Server-Sent Events reader on its own thread (http.client, no library): events land in ``events``."""

    url: str
    token: str
    last_event_id: str | None = None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    events: queue.Queue = field(default_factory=queue.Queue)
    retries: list[int] = field(default_factory=list)
    comments: int = 0
    ended_at: float | None = None

    def open(self, timeout: float = 10) -> SSEStream:
        parts = urlsplit(self.url)
        self._conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        self._conn.request("GET", "/api/v1/live/stream", headers=headers)
        response = self._conn.getresponse()
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.getheaders()}
        self._response = response
        if self.status == 200:
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        else:
            self.body = response.read()
        return self

    def _read(self) -> None:
        event, ident, data = "message", None, []
        try:
            while True:
                line = self._response.readline()
                if not line:
                    break
                line = line.decode().rstrip("\r\n")
                if line == "":
                    if data:
                        self.events.put(Event(event, ident, "\n".join(data), time.monotonic()))
                    event, ident, data = "message", None, []
                elif line.startswith(":"):
                    self.comments += 1
                elif line.startswith("retry:"):
                    self.retries.append(int(line[6:].strip()))
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("id:"):
                    ident = line[3:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
        except (OSError, http.client.HTTPException):
            pass
        finally:
            self.ended_at = time.monotonic()

    def next(self, timeout: float = 10, *, kind: str | None = None) -> Event:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind or 'event'} within {timeout} s")
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if kind is None or event.event == kind:
                return event

    def wait_closed(self, timeout: float) -> float:
        self._thread.join(timeout)
        assert self.ended_at is not None, f"stream still open after {timeout} s"
        return self.ended_at

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self._conn.sock is not None:
                self._conn.sock.close()


def make_token(forge, environment: str = "production", name: str = "it") -> str:
    output = forge.cli(
        "token", "create", "acme/support-bot", "--environment", environment, "--kind", "live", "--name", name
    )
    return output.splitlines()[0].strip()


def get(forge, path: str, token: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(forge.url + path, headers={"Authorization": f"Bearer {token}", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def publish(forge, version: int) -> float:
    """Publish demo set ``core`` version ``version`` to production; returns when the command returned."""
    forge.cli(
        "publish", "acme/support-bot/core", "--version", str(version), "--environment", "production", "--as", "editor"
    )
    return time.monotonic()


@pytest.fixture
def fast_forge(make_forge):
    return make_forge(env=FAST)


def test_publish_reaches_an_open_stream_with_the_bundle_inline(fast_forge):
    token = make_token(fast_forge)
    stream = SSEStream(fast_forge.url, token).open()
    try:
        assert stream.status == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache"
        assert stream.headers["x-accel-buffering"] == "no"
        first = stream.next(kind="release").json()
        assert first["set"] == "core" and first["version"] == 1
        assert stream.retries, "the stream starts with a retry hint"

        publish(fast_forge, 2)

        event = stream.next(timeout=5, kind="release")
        data = event.json()
        assert data["version"] == 2 and event.id == str(data["release_id"])
        bundle = load_bundle(data["bundle"])
        assert bundle.version == 2 and bundle.digest == data["digest"]
        assert bundle.forge == fast_forge.url
        # Under uvicorn the fan-out writes to the socket directly, not through a wake-up per stream.
        assert f"release {data['release_id']} handed to 1 stream(s) (1 written at once)" in fast_forge.log()
    finally:
        stream.close()


def test_unchanged_bundle_answers_304_and_a_publish_changes_it(fast_forge):
    token = make_token(fast_forge)
    status, headers, body = get(fast_forge, "/api/v1/live/bundles/core", token)
    assert status == 200 and load_bundle(body).version == 1
    etag = headers["etag"]

    status, headers, body = get(fast_forge, "/api/v1/live/bundles/core", token, **{"If-None-Match": etag})
    assert status == 304 and body == b"" and headers["etag"] == etag

    publish(fast_forge, 2)
    status, headers, body = get(fast_forge, "/api/v1/live/bundles/core", token, **{"If-None-Match": etag})
    assert status == 200 and load_bundle(body).version == 2 and headers["etag"] != etag


def test_last_event_id_resumes_without_loss_and_without_repeats(fast_forge):
    token = make_token(fast_forge)
    stream = SSEStream(fast_forge.url, token).open()
    seen = stream.next(kind="release")
    stream.close()

    publish(fast_forge, 2)  # while the client is away

    resumed = SSEStream(fast_forge.url, token, last_event_id=seen.id).open()
    try:
        event = resumed.next(kind="release")
        assert event.json()["version"] == 2 and int(event.id) > int(seen.id)
        with pytest.raises(AssertionError):
            resumed.next(timeout=1.5, kind="release")  # nothing else: version 1 was not repeated
    finally:
        resumed.close()

    current = SSEStream(fast_forge.url, token, last_event_id=event.id).open()
    try:
        with pytest.raises(AssertionError):
            current.next(timeout=1.5, kind="release")
        assert current.comments >= 1, "heartbeats keep an idle stream alive"
    finally:
        current.close()


def test_revoked_tokens_open_stream_closes_within_a_second(fast_forge):
    token = make_token(fast_forge)
    stream = SSEStream(fast_forge.url, token).open()
    stream.next(kind="release")
    prefix = token[: len("anvil_live_") + 6]

    fast_forge.cli("token", "revoke", prefix)
    revoked_at = time.monotonic()

    event = stream.next(timeout=2, kind="revoked")
    ended = stream.wait_closed(timeout=2)
    assert event.at - revoked_at < 1.0
    assert ended - revoked_at < 1.0
    status, _, body = get(fast_forge, "/api/v1/live/releases", token)
    assert status == 401 and json.loads(body) == {"error": "invalid token"}
    assert SSEStream(fast_forge.url, token).open().status == 401


def test_bad_token_on_the_stream_is_401_without_a_hint(fast_forge):
    stream = SSEStream(fast_forge.url, "anvil_live_" + "x" * 43).open()
    assert stream.status == 401
    assert json.loads(stream.body) == {"error": "invalid token"}


def test_connection_limit_is_answered_with_503_and_retry_after(make_forge):
    forge = make_forge(env={**FAST, "ANVIL_STREAM_MAX_CONNECTIONS": "1"})
    token = make_token(forge)
    first = SSEStream(forge.url, token).open()
    try:
        second = SSEStream(forge.url, token).open()
        assert second.status == 503
        assert int(second.headers["retry-after"]) >= 1
    finally:
        first.close()


def test_streams_end_at_their_maximum_age_with_a_retry_hint(make_forge):
    forge = make_forge(env={**FAST, "ANVIL_STREAM_MAX_AGE_SECONDS": "1", "ANVIL_STREAM_HEARTBEAT_SECONDS": "0.25"})
    token = make_token(forge)
    stream = SSEStream(forge.url, token).open()
    opened = time.monotonic()
    stream.next(kind="release")
    ended = stream.wait_closed(timeout=5)
    assert 0.6 < ended - opened < 3  # each stream closes at its own moment in the last 30 % of the age (9fc2a45)
    assert len(stream.retries) == 2, "a retry hint at the start and one before closing"


def test_checkin_over_http_registers_the_instance(fast_forge):
    token = make_token(fast_forge)
    body = json.dumps({"instance_id": "it-1", "name": "it", "versions": {"core": 1}}).encode()
    request = urllib.request.Request(
        fast_forge.url + "/api/v1/live/checkin",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200 and json.load(response)["ok"] is True
    garbage = urllib.request.Request(
        fast_forge.url + "/api/v1/live/checkin",
        data=b"{nope",
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(garbage, timeout=10)
    assert refused.value.code == 400 and "not valid JSON" in json.load(refused.value)["error"]

"""A small, real HTTP/SSE server speaking the LIVE protocol (docs/protocol.md), for the client's unit tests.

It is a seam, not a mock: the client talks to it over loopback sockets exactly as to a FORGE. Tests drive it:
``publish(...)`` makes a release and pushes it to open streams; ``drop_streams()`` cuts them; ``revoke()``
sends ``revoked``; ``stream_enabled = False`` answers 404 on the stream (the polling fallback).

``stream_writes`` says how the stream's bytes reach the socket. ``"forge"`` (the default) writes as the real
FORGE (uvicorn) may deliver them: the response head, the ``retry:`` line and the releases replayed on connect
in one write, then one write per frame. ``"bytes"`` writes the same stream one byte per write (``TCP_NODELAY``)
with every frame cut into HTTP chunks of a few bytes, so the client's reads end at arbitrary places: in the
head, in a chunk-size line, between CR and LF, inside an event.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from anvil_client.bundle import build_bundle

TOKEN = "anvil_live_" + "t" * 43
STREAM_WRITES = ("forge", "bytes")
BYTES_MODE_CHUNK = 5  # HTTP chunk size in "bytes" mode: small and odd, so chunks end inside lines
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
)


def make_bundle(
    set_slug: str = "core",
    version: int = 1,
    prompts: list[dict[str, Any]] | None = None,
    *,
    text: str | None = None,
    organisation: str = "acme",
    project: str = "support-bot",
    environment: str = "production",
    forge: str = "http://127.0.0.1:1",
) -> dict[str, Any]:
    """A valid bundle; by default one prompt ``welcome.message`` = ``Hello {{ name }} (v<version>)``."""
    if prompts is None:
        prompts = [
            {
                "id": "welcome.message",
                "template": text if text is not None else f"Hello {{{{ name }}}} (v{version})",
                "parameters": [{"name": "name", "type": "string", "required": True}],
            }
        ]
    return build_bundle(
        forge=forge,
        organisation=organisation,
        project=project,
        environment=environment,
        set_slug=set_slug,
        version=version,
        approval="approved",
        prompts=prompts,
        created_at="2026-11-25T10:00:00Z",
    )


@dataclass
class StubForge:
    token: str = TOKEN
    inline: bool = True
    heartbeat: float = 0.2
    retry_ms: int = 100
    stream_enabled: bool = True
    stream_writes: str = "forge"  # "forge" or "bytes": see the module's docstring
    releases_fail: bool = False  # /releases answers 503
    fail_next_bundles: int = 0  # that many bundle requests answer 503
    organisation: str = "acme"
    project: str = "support-bot"
    environment: str = "production"
    bundles: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    releases: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    checkins: list[dict[str, Any]] = field(default_factory=list)
    checkin_answer: dict[str, Any] = field(default_factory=dict)  # more fields of the check-in's answer
    refuse_fields: tuple[str, ...] = ()  # check-in fields answered 400 "... is not a check-in field" (older FORGEs)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    stream_opens: list[float] = field(default_factory=list)
    _queues: list[queue.Queue[Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next_id: int = 0
    _stopping: bool = False

    # ------------------------------------------------------------------------------------------- driving

    def start(self, port: int = 0) -> StubForge:
        if self.stream_writes not in STREAM_WRITES:
            raise ValueError(f"stream_writes must be one of {STREAM_WRITES}, not {self.stream_writes!r}")
        stub = self

        class Handler(_Handler):
            forge = stub

        self._stopping = False
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="stub-forge", daemon=True).start()
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._stopping = True  # streams opened while stopping end too
        self.drop_streams()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def add_bundle(self, bundle: dict[str, Any]) -> None:
        self.bundles[(bundle["set"], bundle["version"])] = bundle

    def publish(
        self, set_slug: str = "core", version: int = 1, bundle: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        bundle = bundle or make_bundle(set_slug, version, **kw)
        self.add_bundle(bundle)
        with self._lock:
            self._next_id += 1
            release = {
                "set": bundle["set"],
                "version": bundle["version"],
                "release_id": self._next_id,
                "digest": bundle["digest"],
                "content_digest": bundle["content_digest"],
                "published_at": "2026-11-25T10:06:00Z",
                "bundle_url": f"/api/v1/live/bundles/{bundle['set']}?version={bundle['version']}",
            }
            self.releases[bundle["set"]] = release
            self.history.append(release)
            for q in list(self._queues):
                q.put(("release", release))
        return bundle

    def drop_streams(self) -> None:
        for q in list(self._queues):
            q.put(("close", None))

    def revoke(self) -> None:
        for q in list(self._queues):
            q.put(("revoked", None))

    def open_streams(self) -> int:
        return len(self._queues)

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return False

    def event_payload(self, release: dict[str, Any]) -> dict[str, Any]:
        payload = dict(release)
        if self.inline:
            payload["bundle"] = self.bundles[(release["set"], release["version"])]
        return payload


class _Handler(BaseHTTPRequestHandler):
    forge: StubForge
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.forge.token}":
            self._json(401, {"error": "invalid token"})
            return False
        return True

    def do_GET(self) -> None:
        forge = self.forge
        parts = urlsplit(self.path)
        forge.requests.append(("GET", self.path, dict(self.headers)))
        if not self._authorised():
            return
        if parts.path == "/api/v1/live/releases" and forge.releases_fail:
            self._json(503, {"error": "database unavailable"}, {"Retry-After": "1"})
        elif parts.path == "/api/v1/live/releases":
            last = str(max((r["release_id"] for r in forge.releases.values()), default=0))
            self._json(
                200,
                {
                    "organisation": forge.organisation,
                    "project": forge.project,
                    "environment": forge.environment,
                    "last_event_id": last,
                    "releases": sorted(forge.releases.values(), key=lambda r: r["set"]),
                },
            )
        elif parts.path.startswith("/api/v1/live/bundles/"):
            set_slug = parts.path.rsplit("/", 1)[1]
            query = parse_qs(parts.query)
            version = int(query["version"][0]) if "version" in query else forge.releases[set_slug]["version"]
            bundle = forge.bundles.get((set_slug, version))
            if forge.fail_next_bundles > 0:
                forge.fail_next_bundles -= 1
                self._json(503, {"error": "busy"})
                return
            if bundle is None:
                self._json(404, {"error": "no such version"})
                return
            etag = '"' + bundle["digest"].removeprefix("sha256:") + '"'
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._json(200, bundle, {"ETag": etag})
        elif parts.path == "/api/v1/live/stream":
            if not forge.stream_enabled:
                self._json(404, {"error": "not found"})
                return
            self._stream()
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        forge = self.forge
        forge.requests.append(("POST", self.path, dict(self.headers)))
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if not self._authorised():
            return
        if self.path == "/api/v1/live/checkin":
            data = json.loads(body)
            refused = sorted(set(data) & set(forge.refuse_fields))
            if refused:
                self._json(400, {"error": f"{refused[0]}: is not a check-in field"})
                return
            forge.checkins.append(data)
            self._json(200, {"ok": True, "server_time": "2026-11-25T10:00:00Z", **forge.checkin_answer})
        else:
            self._json(404, {"error": "not found"})

    def _chunk(self, frame: bytes) -> bytes:
        """``frame`` in HTTP/1.1 chunked encoding: one chunk, or chunks of a few bytes in "bytes" mode."""
        size = BYTES_MODE_CHUNK if self.forge.stream_writes == "bytes" else len(frame)
        pieces = [frame[i : i + size] for i in range(0, len(frame), size)]
        return b"".join(b"%x\r\n%b\r\n" % (len(piece), piece) for piece in pieces)

    def _send(self, data: bytes) -> None:
        if self.forge.stream_writes == "bytes":
            for i in range(len(data)):
                self.connection.sendall(data[i : i + 1])
        else:
            self.connection.sendall(data)

    def _stream(self) -> None:
        forge = self.forge
        q: queue.Queue[Any] = queue.Queue()
        last = self.headers.get("Last-Event-ID")
        if forge.stream_writes == "bytes":
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            with forge._lock:
                backlog = [r for r in forge.releases.values() if last is None or r["release_id"] > int(last)]
                forge._queues.append(q)
            forge.stream_opens.append(time.monotonic())
            # As the FORGE: the head, the retry hint and the replayed releases leave together.
            first = f"retry: {forge.retry_ms}\n\n".encode() + b"".join(self._frame(r) for r in backlog)
            self._send(STREAM_HEAD + self._chunk(first))
            last_write = time.monotonic()
            while True:
                try:
                    kind, release = q.get(timeout=min(forge.heartbeat, 0.2))
                except queue.Empty:
                    if forge._stopping:
                        break
                    if time.monotonic() - last_write >= forge.heartbeat:
                        self._send(self._chunk(b": heartbeat\n\n"))
                        last_write = time.monotonic()
                    continue
                if kind == "close":
                    self._send(b"0\r\n\r\n")
                    break
                if kind == "revoked":
                    self._send(self._chunk(b"event: revoked\ndata: {}\n\n") + b"0\r\n\r\n")
                    break
                self._send(self._chunk(self._frame(release)))
                last_write = time.monotonic()
        except OSError:
            pass
        finally:
            with forge._lock:
                if q in forge._queues:
                    forge._queues.remove(q)
            self.close_connection = True

    def _frame(self, release: dict[str, Any]) -> bytes:
        data = json.dumps(self.forge.event_payload(release))
        return f"id: {release['release_id']}\nevent: release\ndata: {data}\n\n".encode()

"""A misbehaving FORGE on loopback: speaks the LIVE protocol (docs/protocol.md), then breaks it on demand.

``faults`` maps an endpoint (``releases``, ``bundle``, ``stream``, ``checkin``) to a behaviour:

    ("status", 500)                       answer with that status and a JSON error
    ("status", 503, {"Retry-After": "2"}) the same, with headers
    "hang"                                accept the request and never answer
    "close"                               close the connection without a word

``bundle_hook(bytes) -> bytes`` changes every bundle served (truncate it, flip a byte...). Release events
never inline the bundle here, so the client always fetches it (and meets the hook). ``hits`` records
``(monotonic time, endpoint)`` for every request, ``checkins`` every check-in body.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from anvil_client.bundle import build_bundle, canonical_json

TOKEN = "anvil_live_" + "r" * 43


def demo_bundle(version: int, **identity: str) -> dict[str, Any]:
    """A bundle of set ``core`` whose ``greeting.welcome`` says which version it is."""
    return build_bundle(
        forge="http://127.0.0.1:1",
        organisation=identity.get("organisation", "acme"),
        project=identity.get("project", "support-bot"),
        environment=identity.get("environment", "production"),
        set_slug="core",
        version=version,
        approval="approved",
        prompts=[
            {
                "id": "greeting.welcome",
                "template": f"Hi {{{{ customer_name }}}}! (v{version})",
                "parameters": [{"name": "customer_name", "type": "string", "required": True}],
            }
        ],
        created_at="2026-11-25T10:00:00Z",
    )


@dataclass
class FakeForge:
    organisation: str = "acme"
    project: str = "support-bot"
    environment: str = "production"
    heartbeat: float = 0.2
    retry_ms: int = 200
    faults: dict[str, Any] = field(default_factory=dict)
    bundle_hook: Callable[[bytes], bytes] | None = None
    hits: list[tuple[float, str]] = field(default_factory=list)
    checkins: list[dict[str, Any]] = field(default_factory=list)
    bundles: dict[int, dict[str, Any]] = field(default_factory=dict)
    current: dict[str, Any] | None = None
    _streams: list[queue.Queue[Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _release_id: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, port: int = 0) -> FakeForge:
        forge = self

        class Handler(_Handler):
            fake = forge

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-forge", daemon=True).start()
        return self

    def stop(self) -> None:
        for q in list(self._streams):
            q.put(None)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def publish(self, bundle: dict[str, Any]) -> None:
        """Make ``bundle`` the current release of its set and announce it on every open stream."""
        with self._lock:
            self._release_id += 1
            self.bundles[bundle["version"]] = bundle
            self.current = {
                "set": bundle["set"],
                "version": bundle["version"],
                "release_id": self._release_id,
                "digest": bundle["digest"],
                "content_digest": bundle["content_digest"],
                "published_at": "2026-11-25T10:06:00Z",
                "bundle_url": f"/api/v1/live/bundles/{bundle['set']}?version={bundle['version']}",
            }
            for q in self._streams:
                q.put(self.current)

    def drop_streams(self) -> None:
        for q in list(self._streams):
            q.put(None)

    def times(self, endpoint: str) -> list[float]:
        return [at for at, name in self.hits if name == endpoint]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeForge
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _fault(self, endpoint: str) -> bool:
        """Apply the endpoint's fault, if any; True when the request is dealt with."""
        self.fake.hits.append((time.monotonic(), endpoint))
        fault = self.fake.faults.get(endpoint)
        if fault is None:
            return False
        if fault == "hang":
            time.sleep(30)
            self.close_connection = True
            return True
        if fault == "close":
            self.close_connection = True
            return True
        _, status, *rest = fault
        self._json(status, {"error": f"fault injected: {status}"}, rest[0] if rest else None)
        return True

    def do_GET(self) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._json(401, {"error": "invalid token"})
            return
        if parts.path == "/api/v1/live/releases":
            if self._fault("releases"):
                return
            releases = [fake.current] if fake.current else []
            self._json(
                200,
                {
                    "organisation": fake.organisation,
                    "project": fake.project,
                    "environment": fake.environment,
                    "last_event_id": str(fake._release_id),
                    "releases": releases,
                },
            )
        elif parts.path.startswith("/api/v1/live/bundles/"):
            if self._fault("bundle"):
                return
            version = int(parse_qs(parts.query).get("version", ["0"])[0])
            bundle = fake.bundles.get(version)
            if bundle is None:
                self._json(404, {"error": "no such version"})
                return
            body = canonical_json(bundle)
            if fake.bundle_hook is not None:
                body = fake.bundle_hook(body)
            self._json(200, None, {"ETag": '"' + bundle["digest"][7:] + '"'}, raw=body)
        elif parts.path == "/api/v1/live/stream":
            if self._fault("stream"):
                return
            self._stream()
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self._fault("checkin"):
            return
        self.fake.checkins.append(json.loads(body))
        self._json(200, {"ok": True, "server_time": "2026-11-25T10:00:00Z"})

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _stream(self) -> None:
        fake = self.fake
        q: queue.Queue[Any] = queue.Queue()
        last = self.headers.get("Last-Event-ID")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with fake._lock:
            fake._streams.append(q)
            if fake.current and (last is None or not last.isdigit() or fake.current["release_id"] > int(last)):
                q.put(fake.current)
        try:
            self._chunk(f"retry: {fake.retry_ms}\n\n")
            while True:
                try:
                    release = q.get(timeout=fake.heartbeat)
                except queue.Empty:
                    self._chunk(": heartbeat\n\n")
                    continue
                if release is None:
                    self.wfile.write(b"0\r\n\r\n")
                    break
                self._chunk(f"event: release\nid: {release['release_id']}\ndata: {json.dumps(release)}\n\n")
        except OSError:
            pass
        finally:
            with fake._lock:
                if q in fake._streams:
                    fake._streams.remove(q)
            self.close_connection = True

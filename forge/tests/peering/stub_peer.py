"""A small HTTP server on loopback that plays a peer FORGE: it answers from a table, or misbehaves on purpose."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@dataclass
class StubPeer:
    url: str
    routes: dict[str, Handler] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def json(self, path: str, body: Any, status: int = 200) -> None:
        self.routes[path] = reply(json.dumps(body).encode(), status=status)


def reply(body: bytes, *, status: int = 200, content_type: str = "application/json", headers: dict | None = None):
    def handle(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(body)

    return handle


def slow(seconds: float, then: Handler | None = None) -> Handler:
    """Waits ``seconds``, then answers as ``then`` would (``{}`` by default)."""

    def handle(handler: http.server.BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        (then or reply(b"{}"))(handler)

    return handle


def drip(total_seconds: float, every: float = 0.2) -> Handler:
    """Sends headers, then one byte every ``every`` seconds: each read is quick, the whole is slow."""

    def handle(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        deadline = time.monotonic() + total_seconds
        try:
            while time.monotonic() < deadline:
                handler.wfile.write(b" ")
                handler.wfile.flush()
                time.sleep(every)
        except OSError:
            pass

    return handle


def endless_chunked(chunk: bytes = b"x" * 65536) -> Handler:
    """An answer without Content-Length that never stops (a size limit must cut it)."""

    def handle(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        try:
            for _ in range(10_000):
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass

    return handle


@contextmanager
def stub_peer() -> Iterator[StubPeer]:
    state = StubPeer(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            headers = self.headers
            state.requests.append(
                {"path": self.path, "authorization": headers.get("Authorization"), "host": headers.get("Host")}
            )
            route = state.routes.get(path)
            if route is None:
                reply(b'{"error": "not found"}', status=404)(self)
            else:
                route(self)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # the client hanging up on a misbehaving answer is the point of those tests

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="stub-peer", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def page(items: list[dict], *, page: int = 1, per_page: int = 50, total: int | None = None, next_page=None) -> dict:
    return {"items": items, "page": page, "per_page": per_page, "total": len(items) if total is None else total,
            "next_page": next_page}


def serve_project(
    server: StubPeer, *, organisation: str = "acme", project: str = "support-bot", sets: dict[str, list[list[dict]]]
) -> dict[tuple[str, int], dict]:
    """Make ``server`` answer the peer API for one project whose sets have these versions (lists of prompts).

    Returns the bundles by (set, version).
    """
    from anvil_client.bundle import build_bundle

    base = f"/api/v1/peer/projects/{organisation}/{project}"
    server.json("/api/v1/peer/projects", page([{"organisation": organisation, "organisation_name": "Acme",
                                                 "project": project, "name": "Support bot", "description": ""}]))
    set_items, bundles = [], {}
    for slug, versions in sets.items():
        set_items.append({"set": slug, "name": slug.title(), "description": "", "latest_version": len(versions),
                          "approved_versions": len(versions)})
        version_items = []
        for number, prompts in enumerate(versions, start=1):
            bundle = build_bundle(
                forge=server.url, organisation=organisation, project=project, environment="production",
                set_slug=slug, version=number, approval="approved", created_at="2026-11-25T10:00:00Z",
                approved_at="2026-11-25T10:05:00Z", approved_by="reviewer", prompts=prompts,
            )
            bundles[(slug, number)] = bundle
            server.json(f"{base}/sets/{slug}/versions/{number}", bundle)
            item = {"version": number, "digest": bundle["content_digest"], "prompt_count": len(prompts)}
            version_items.insert(0, item)
        server.json(f"{base}/sets/{slug}/versions", page(version_items))
    server.json(f"{base}/sets", page(set_items))
    return bundles

"""A loopback stub of the one Langfuse public API endpoint the Python SDK's ``get_prompt`` calls.

``Langfuse.get_prompt(name, label=...)`` fetches ``GET /api/public/v2/prompts/{name}`` (query
``label`` / ``version`` / ``resolve``) with HTTP Basic auth (public key : secret key), and parses the
answer as the ``Prompt`` union of ``langfuse.api.prompts.types.prompt``: ``type`` ``"text"`` with
``prompt`` a string, ``name``, ``version``, ``config``, ``labels``, ``tags`` (``commitMessage`` and
``resolutionGraph`` optional). This stub serves text prompts from a dict and counts every request,
so a benchmark can prove its timed loop made none (the SDK's cache answered).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

PROMPT_PATH_PREFIX = "/api/public/v2/prompts/"


class LangfuseStub:
    """Serve ``prompts`` (name -> text template) the way Langfuse's public API does, on 127.0.0.1.

    Use as a context manager; ``url`` is the base URL to give ``Langfuse(host=...)``; ``requests``
    counts requests by path.
    """

    def __init__(self, prompts: Mapping[str, str], *, version: int = 1, labels: tuple[str, ...] = ("production",)):
        self.prompts = dict(prompts)
        self.version = version
        self.labels = list(labels)
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stub is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def prompt_body(self, name: str) -> dict[str, Any]:
        return {
            "type": "text",
            "name": name,
            "version": self.version,
            "prompt": self.prompts[name],
            "config": {},
            "labels": self.labels,
            "tags": [],
            "commitMessage": None,
            "resolutionGraph": None,
        }

    def start(self) -> LangfuseStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # head and body are two writes: no 40 ms delayed-ACK stall

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                with stub._lock:
                    stub.requests[path] += 1
                if not self.headers.get("Authorization", "").startswith("Basic "):
                    self._send(401, {"message": "Unauthorized"})
                    return
                if not path.startswith(PROMPT_PATH_PREFIX):
                    self._send(404, {"message": f"no such endpoint in the stub: {path}"})
                    return
                name = unquote(path[len(PROMPT_PATH_PREFIX) :])
                query = parse_qs(urlsplit(self.path).query)
                label = query.get("label", ["production"])[0]
                if name not in stub.prompts or label not in stub.labels:
                    self._send(404, {"error": "LangfuseNotFoundError", "message": f"Prompt not found: {name}"})
                    return
                self._send(200, stub.prompt_body(name))

            def do_POST(self) -> None:  # tracing is off; anything posted is counted and refused
                length = int(self.headers.get("Content-Length", "0") or 0)
                self.rfile.read(length)
                with stub._lock:
                    stub.requests[urlsplit(self.path).path] += 1
                self._send(404, {"message": "the stub only serves prompts"})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="bench.langfuse-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def total_requests(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def __enter__(self) -> LangfuseStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

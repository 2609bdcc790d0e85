"""Many idle LIVE streams from one process: a worker the stream benchmarks start several of.

``python -m bench.stream_clients URL TOKEN`` reads commands on stdin and answers one JSON line each:

* ``open N [SECONDS]``: open N more ``GET /api/v1/live/stream`` connections (at most 50 connecting at
  once), starting no new one after SECONDS; answers how many are open, failed, not attempted, and the
  status codes seen.
* ``mark``: start a heartbeat observation window now.
* ``stats``: heartbeat gaps seen since ``mark`` (seconds between two heartbeats on one connection),
  how many connections are overdue (no heartbeat for more than 1.5 intervals), how many closed.
* ``quit``: close everything and exit.

Each connection is an ``asyncio.Protocol`` that de-chunks the HTTP body and splits Server-Sent
Events lines: a comment line (``:`` first) is a heartbeat, ``event:`` lines are counted. Nothing is
kept per connection but a few numbers, so one process holds thousands of streams.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from bench.common import raise_fd_limit, summarize

CONNECT_CONCURRENCY = 50
HEAD_TIMEOUT_S = 60.0


class StreamConnection(asyncio.Protocol):
    def __init__(self, request: bytes, pool: Pool) -> None:
        self.request = request
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.status: int | None = None
        self.chunked = False
        self.raw = b""
        self.text = b""
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.last_heartbeat: float | None = None
        self.events = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.status is None:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, _, rest = self.head.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            self.status = int(lines[0].split(b" ", 2)[1])
            self.chunked = any(
                line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower() for line in lines
            )
            self.head = b""
            if not self.ready.done():
                self.ready.set_result(self.status)
            if self.status != 200:
                self.transport.close()  # type: ignore[union-attr]
                return
            data = rest
        if self.chunked:
            self.raw += data
            self._dechunk()
        else:
            self._feed(data)

    def _dechunk(self) -> None:
        while True:
            end = self.raw.find(b"\r\n")
            if end < 0:
                return
            size = int(self.raw[:end].split(b";")[0] or b"0", 16)
            if len(self.raw) < end + 2 + size + 2:
                return
            self._feed(self.raw[end + 2 : end + 2 + size])
            self.raw = self.raw[end + 2 + size + 2 :]

    def _feed(self, data: bytes) -> None:
        self.text += data
        while b"\n" in self.text:
            line, _, self.text = self.text.partition(b"\n")
            if line.startswith(b":"):
                now = time.monotonic()
                if self.last_heartbeat is not None and self.last_heartbeat >= self.pool.mark_at:
                    self.pool.gaps.append(now - self.last_heartbeat)
                self.last_heartbeat = now
            elif line.startswith(b"event:"):
                self.events += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("closed before the response head"))


class Pool:
    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        path = (parts.path.rstrip("/") or "") + "/api/v1/live/stream"
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAuthorization: Bearer {token}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        ).encode()
        self.connections: list[StreamConnection] = []
        self.failed = 0
        self.not_attempted = 0
        self.statuses: dict[str, int] = {}
        self.mark_at = time.monotonic()
        self.gaps: list[float] = []

    async def open_one(self, gate: asyncio.Semaphore, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        async with gate:
            if time.monotonic() > deadline:
                self.not_attempted += 1
                return
            try:
                _, protocol = await loop.create_connection(
                    lambda: StreamConnection(self.request, self), self.host, self.port
                )
                status = await asyncio.wait_for(protocol.ready, timeout=HEAD_TIMEOUT_S)
            except (TimeoutError, OSError, ConnectionError) as exc:
                self.failed += 1
                self.statuses[type(exc).__name__] = self.statuses.get(type(exc).__name__, 0) + 1
                return
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
            if status == 200:
                self.connections.append(protocol)
            else:
                self.failed += 1

    async def open(self, count: int, budget_s: float) -> dict[str, Any]:
        started = time.monotonic()
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        self.not_attempted = 0
        await asyncio.gather(*(self.open_one(gate, started + budget_s) for _ in range(count)))
        return {
            "open": sum(not c.closed for c in self.connections),
            "failed": self.failed,
            "not_attempted": self.not_attempted,
            "statuses": self.statuses,
            "seconds": round(time.monotonic() - started, 3),
        }

    def stats(self, interval: float) -> dict[str, Any]:
        now = time.monotonic()
        live = [c for c in self.connections if not c.closed]
        watched_long_enough = now - self.mark_at > interval
        overdue = sum(1 for c in live if (c.last_heartbeat or self.mark_at) < now - 1.5 * interval)
        overdue = overdue if watched_long_enough else 0
        return {
            "open": len(live),
            "closed": len(self.connections) - len(live),
            "gaps": [round(g, 4) for g in self.gaps],
            "gap_s": summarize(self.gaps, 4),
            "overdue": overdue,
            "never_heartbeat_since_mark": sum(1 for c in live if (c.last_heartbeat or 0) < self.mark_at),
            "events": sum(c.events for c in self.connections),
            "window_s": round(now - self.mark_at, 3),
        }

    def close(self) -> None:
        for connection in self.connections:
            if connection.transport is not None:
                connection.transport.close()


async def serve(url: str, token: str, interval: float) -> None:
    pool = Pool(url, token)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(payload: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()

    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            pool.close()
            await asyncio.sleep(0.1)
            answer({"bye": True})
            return
        command, _, argument = line.partition(" ")
        if command == "open":
            count, _, budget = argument.partition(" ")
            answer(await pool.open(int(count), float(budget or "3600")))
        elif command == "mark":
            pool.mark_at = time.monotonic()
            pool.gaps = []
            answer({"marked": True})
        elif command == "stats":
            answer(pool.stats(interval))
        else:
            answer({"error": f"unknown command {line!r}"})


def main() -> int:
    url, token, interval = sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 15.0
    raise_fd_limit(20_000)
    try:
        import uvloop

        uvloop.run(serve(url, token, interval))
    except ImportError:
        asyncio.run(serve(url, token, interval))
    return 0


if __name__ == "__main__":
    sys.exit(main())

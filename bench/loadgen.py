"""A small, bounded HTTP/1.1 load generator for loopback benchmarks (asyncio, raw sockets, keep-alive).

Closed loop: ``connections`` keep-alive connections each send one request, read the whole answer,
and send the next, until ``duration_s`` has passed or ``max_requests`` were sent, whichever comes
first. It measures requests per second, per-request latency and the status codes seen. Raw sockets
rather than an HTTP client library keep the generator's own cost per request small (a few tens of
microseconds), so on 2 cores it is not what limits the figure.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.common import summarize


@dataclass
class LoadResult:
    requests: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    body_bytes: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "rps": round(self.requests / self.seconds, 1) if self.seconds else None,
            "latency_ms": summarize(self.latencies_ms),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "mean_body_bytes": round(self.body_bytes / self.requests) if self.requests else 0,
            "errors": dict(self.errors),
        }


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Read one response; return (status, body length). Handles Content-Length and chunked bodies."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value.strip())
        elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if status in (204, 304) or (length is None and not chunked):
        return status, 0
    if length is not None:
        await reader.readexactly(length)
        return status, length
    total = 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return status, total
        await reader.readexactly(size + 2)
        total += size


def build_request(host: str, port: int, path: str, headers: Mapping[str, str] | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: keep-alive"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def run_load(
    host: str,
    port: int,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    connections: int = 16,
    duration_s: float = 5.0,
    max_requests: int = 100_000,
    warmup_s: float = 0.5,
) -> LoadResult:
    """Drive ``GET path`` with ``connections`` closed-loop keep-alive connections; bounded in time and count."""
    request = build_request(host, port, path, headers)
    result = LoadResult()
    sent = 0
    measure_from = time.perf_counter() + warmup_s  # connections open and caches warm before counting
    deadline = measure_from + duration_s
    last_done = measure_from

    async def worker() -> None:
        nonlocal sent, last_done
        reader = writer = None
        while time.perf_counter() < deadline and sent < max_requests:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                sent += 1
                began = time.perf_counter()
                writer.write(request)
                status, size = await _read_response(reader)
                done = time.perf_counter()
                if began >= measure_from:
                    result.requests += 1
                    result.statuses[status] += 1
                    result.latencies_ms.append((done - began) * 1000)
                    result.body_bytes += size
                    last_done = max(last_done, done)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                if time.perf_counter() >= measure_from:
                    result.errors[type(exc).__name__] += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.01)
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    result.seconds = last_done - measure_from
    return result


def run(host: str, port: int, path: str, **kwargs: Any) -> LoadResult:
    """Synchronous wrapper (uvloop when available, as the FORGE itself uses)."""
    try:
        import uvloop

        return uvloop.run(run_load(host, port, path, **kwargs))
    except ImportError:
        return asyncio.run(run_load(host, port, path, **kwargs))

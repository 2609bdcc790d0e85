"""A fleet under load (issue 18): check-in floods, stream churn and a clean shutdown, against a real FORGE.

* ``checkin_flood`` (SQLite, and PostgreSQL when it is reachable): instances check in at a fixed rate over
  keep-alive loopback connections for a bounded time; figures: check-ins answered per second, errors
  (anything but 200), p99 latency, and the FORGE's open files and RSS before and after (after a short settle).
* ``stream_churn``: streams opened and closed in rounds (orderly and aborted closes); the FORGE's RSS growth.
* ``shutdown``: streams open, SIGTERM; seconds to exit, streams that got ``retry:`` and a proper end, and the
  tracebacks in the FORGE's log.

Run: ``.venv/bin/python -m bench --only fleet`` (or ``.venv/bin/python -m bench.fleet``); writes
``bench/results/fleet.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
import urllib.request
from typing import Any

from bench.common import (
    cpu_seconds,
    log,
    percentile,
    query_one,
    raise_fd_limit,
    rss_mb,
    running_forge,
    write_result,
)

TOKEN_PATTERN = re.compile(r"anvil_live_[A-Za-z0-9_\-]+")
CHECKIN_PATH = "/api/v1/live/checkin"
STREAM_PATH = "/api/v1/live/stream"


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def create_token(forge: Any) -> str:
    output = forge.cli(
        "token", "create", "acme/support-bot", "--environment", "production", "--kind", "live", "--name", "fleet"
    )
    match = TOKEN_PATTERN.search(output)
    if not match:
        raise RuntimeError(f"no live token in the output of `anvil-forge token create`:\n{output}")
    return match.group(0)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, body


def checkin_request(port: int, token: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    return (
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (CHECKIN_PATH.encode(), port, token.encode(), len(payload), payload)
    )


async def flood(
    port: int, token: str, *, rate: float, seconds: float, instances: int, connections: int = 40
) -> dict[str, Any]:
    """Check-ins at ``rate`` a second for ``seconds`` from ``instances`` instances (each checking in in turn)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    total = int(rate * seconds)
    queue: asyncio.Queue[int | None] = asyncio.Queue()

    async def connection() -> None:
        nonlocal errors
        reader = writer = None
        while True:
            index = await queue.get()
            if index is None:
                break
            number = index % instances
            body = {
                "instance_id": f"fleet-{number}",
                "process_id": 1000 + number,
                "name": f"fleet-{number}",
                "host": f"host-{number % 50}",
                "client_version": "bench",
                "versions": {"core": 1},
                "checkin_interval": instances / rate,
            }
            started = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(checkin_request(port, token, body))
                status, _ = await asyncio.wait_for(_read_response(reader), timeout=30)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                status = 0
                if writer is not None:
                    writer.close()
                reader = writer = None
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            if status != 200:
                errors += 1
        if writer is not None:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    started = time.perf_counter()
    for index in range(total):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(index)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - started
    return {
        "offered_per_second": rate,
        "sent": total,
        "per_second": round((total - errors) / elapsed, 1),
        "errors": errors,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
        "seconds": round(elapsed, 1),
    }


def checkin_flood(
    *, postgres_url: str | None, rate: float, seconds: float, instances: int = 12_000, settle: float = 5.0
) -> dict[str, Any]:
    with running_forge(postgres_url=postgres_url, env={"ANVIL_LOG_LEVEL": "WARNING"}) as forge:
        token = create_token(forge)
        pid = forge.process.pid
        # A first round registers the instances (every check-in a new process: a fleet restarting) and warms
        # every path; the measured round starts once the FORGE recorded them all, so it measures the steady state.
        started = time.monotonic()
        first = asyncio.run(flood(forge.port, token, rate=rate, seconds=instances / rate, instances=instances))
        recorded_after = wait_recorded(forge.database_url, instances, started, limit=90)
        time.sleep(1)
        fd_before, rss_before = open_files(pid), rss_mb(pid)
        cpu_before = cpu_seconds(pid)
        result = asyncio.run(flood(forge.port, token, rate=rate, seconds=seconds, instances=instances))
        cpu = cpu_seconds(pid) - cpu_before  # the writer's last batch is within the flood's 50 ms window
        time.sleep(settle)
        result.update(
            {
                "database": "postgresql" if postgres_url else "sqlite",
                "fd_before": fd_before,
                "fd_after": open_files(pid),
                "fd_growth": open_files(pid) - fd_before,
                "rss_before_mb": round(rss_before, 1),
                "rss_growth_mb": round(rss_mb(pid) - rss_before, 1),
                # What the FORGE itself spends (its process: requests and the batch writer; not the database
                # server's): on a shared machine the steadier figure, and the rate one free core would sustain.
                "forge_cpu_ms_per_checkin": round(cpu * 1000 / max(result["sent"] - result["errors"], 1), 3),
                "forge_core_share": round(cpu / result["seconds"], 2),
                # The first round: as many first check-ins (new processes) at the same rate, and when the last
                # was recorded (each takes the full path: instance and process rows, an acknowledgement).
                "first_checkins": {
                    "sent": first["sent"],
                    "errors": first["errors"],
                    "p99_ms": first["p99_ms"],
                    "all_recorded_after_seconds": recorded_after,
                },
            }
        )
        with urllib.request.urlopen(forge.url + "/healthz", timeout=5) as response:
            assert response.status == 200
        return result


def wait_recorded(database_url: str, count: int, started: float, *, limit: float) -> float | None:
    """Seconds from ``started`` until the FORGE's database holds ``count`` processes of the flood (None: not
    within ``limit`` seconds)."""
    query = "SELECT COUNT(*) FROM distribution_liveprocess WHERE process_id >= 1000"
    while time.monotonic() - started < limit:
        recorded = query_one(database_url, query)
        if recorded >= count:
            return round(time.monotonic() - started, 2)
        time.sleep(0.05)
    return None


def stream_request(port: int, token: str) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n" % (
        STREAM_PATH.encode(),
        port,
        token.encode(),
    )


class Stream:
    """One open stream: its connection and everything it received."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.received = b""
        self.status = 0

    async def open(self, request: bytes) -> Stream:
        self.writer.write(request)
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout=30)
        self.status = int(head.split(b" ", 2)[1])
        self.received = head
        return self

    async def read_to_end(self, timeout: float) -> bytes:
        """Everything until the server closes (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), timeout=deadline - time.monotonic())
            except (TimeoutError, OSError):
                break
            if not chunk:
                break
            self.received += chunk
        return self.received

    @property
    def ended_properly(self) -> bool:
        """Whether the body ended with the chunked terminator after a ``retry:`` field."""
        return b"retry: " in self.received.split(b"\r\n\r\n", 1)[-1][-200:] and self.received.endswith(b"0\r\n\r\n")


async def open_streams(port: int, token: str, count: int, *, concurrency: int = 50) -> list[Stream]:
    request = stream_request(port, token)
    gate = asyncio.Semaphore(concurrency)

    async def one() -> Stream | None:
        async with gate:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
                return await Stream(reader, writer).open(request)
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                return None

    opened = await asyncio.gather(*(one() for _ in range(count)))
    return [stream for stream in opened if stream is not None and stream.status == 200]


async def churn(port: int, token: str, *, rounds: int, per_round: int) -> list[int]:
    """Open ``per_round`` streams and close them (half orderly, half aborted), ``rounds`` times."""
    opened = []
    for _ in range(rounds):
        streams = await open_streams(port, token, per_round)
        opened.append(len(streams))
        for index, stream in enumerate(streams):
            if index % 2:
                stream.writer.transport.abort()
            else:
                stream.writer.close()
        await asyncio.sleep(0.5)
    return opened


def stream_churn(*, connections: int = 3000, rounds: int = 6) -> dict[str, Any]:
    """The FORGE's RSS after a warm-up round, and after ``connections`` more streams opened and closed."""
    per_round = connections // rounds
    with running_forge(env={"ANVIL_LOG_LEVEL": "WARNING"}) as forge:
        token = create_token(forge)
        pid = forge.process.pid
        asyncio.run(churn(forge.port, token, rounds=1, per_round=per_round))  # warm-up: code paths, pools
        time.sleep(1)
        before = rss_mb(pid)
        opened = asyncio.run(churn(forge.port, token, rounds=rounds, per_round=per_round))
        time.sleep(2)
        after = rss_mb(pid)
        return {
            "connections": sum(opened),
            "rss_before_mb": round(before, 1),
            "rss_after_mb": round(after, 1),
            "rss_growth_mb": round(after - before, 1),
            "rss_growth_percent": round(100 * (after - before) / before, 1),
        }


TRACEBACK = re.compile(r"^Traceback \(most recent call last\)", re.M)


def shutdown(*, streams: int = 10_000) -> dict[str, Any]:
    """``streams`` open streams, SIGTERM: seconds to exit, streams ended with ``retry:``, tracebacks logged."""

    async def run(forge: Any, token: str) -> dict[str, Any]:
        opened = await open_streams(forge.port, token, streams)
        await asyncio.sleep(0.5)
        started = time.monotonic()
        forge.process.send_signal(signal.SIGTERM)
        reads = [asyncio.create_task(stream.read_to_end(10)) for stream in opened]
        while forge.process.poll() is None and time.monotonic() - started < 15:
            await asyncio.sleep(0.02)
        seconds = time.monotonic() - started
        await asyncio.gather(*reads)
        retries = [
            int(m)
            for stream in opened
            for m in re.findall(rb"retry: (\d+)", stream.received.split(b"\r\n\r\n", 1)[-1][-200:])
        ]
        return {
            "streams": len(opened),
            "seconds": round(seconds, 2),
            "exit_code": forge.process.returncode,
            "ended_with_retry": sum(stream.ended_properly for stream in opened),
            "retry_ms_spread": [min(retries), max(retries)] if retries else None,
        }

    with running_forge(env={"ANVIL_LOG_LEVEL": "INFO", "ANVIL_STREAM_MAX_CONNECTIONS": "20000"}) as forge:
        token = create_token(forge)
        result = asyncio.run(run(forge, token))
        log_text = forge.log()
        result["tracebacks"] = len(TRACEBACK.findall(log_text))
        result["cancelled_errors"] = log_text.count("CancelledError")
        return result


def main() -> None:
    from bench.api import DEFAULT_PG, postgres_available

    raise_fd_limit(20_000)
    pg = os.environ.get("ANVIL_BENCH_DATABASE_URL", DEFAULT_PG)
    floods: dict[str, Any] = {}
    # 200 instances checking in once a second each, after a first round that registers them.
    floods["sqlite"] = checkin_flood(postgres_url=None, rate=200, seconds=20, instances=200)
    log(f"checkin_flood sqlite: {floods['sqlite']}")
    if postgres_available(pg):
        floods["postgresql"] = checkin_flood(postgres_url=pg, rate=1000, seconds=15, instances=1000)
        log(f"checkin_flood postgresql: {floods['postgresql']}")
    else:
        floods["postgresql"] = {"skipped": f"PostgreSQL did not answer at {pg}"}
    churn_figures = stream_churn(connections=3000, rounds=6)
    log(f"stream_churn: {churn_figures}")
    shutdown_figures = shutdown(streams=10_000)  # the goal: under 3 s with 10,000 streams
    log(f"shutdown: {shutdown_figures}")
    write_result("fleet", {"checkin_flood": floods, "stream_churn": churn_figures, "shutdown": shutdown_figures})


if __name__ == "__main__":
    main()

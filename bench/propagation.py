"""Publish-to-delivery latency over N concurrent LIVE streams, and the memory an idle stream costs.

``python -m bench.propagation [--streams 100,1000] [--rounds 5] [--workers 4]`` writes
``bench/results/propagation.json``:

    {"streams": {"100": {"p50_ms": .., "p99_ms": .., ...}, "1000": {...}},
     "idle_stream_memory": {"streams": 1000, "rss_before_mb": .., "rss_after_mb": .., "kb_per_stream": ..},
     "method": {...}, "meta": {machine, python, packages, date, load}}

Method. One FORGE process (``anvil-forge serve``, uvicorn) on PostgreSQL, as in production: publishes
reach it through LISTEN/NOTIFY. Stream clients run in ``--workers`` separate processes, each holding
its share of the streams as raw asyncio sockets that split the SSE body and stamp the wall-clock time a
``release`` event is complete. A publisher process (Django, the real ``version_publish`` service) prepares
new approved versions ahead, then publishes one per round and stamps the wall-clock time its transaction
commits (read just before COMMIT). Latency per stream = receive time - that time (one machine, one clock).
Streams are opened in steps (100, then up to 1,000), and the FORGE's RSS is read before any stream and after the largest
step has been idle for a moment: (after - before) / N is the memory per idle stream.

Without PostgreSQL (``ANVIL_BENCH_POSTGRES_URL`` or 127.0.0.1:5432) it falls back to SQLite, where an
external publisher is heard by the periodic check: the figures then measure that check, and say so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.common import log, percentile, raise_fd_limit, rss_mb, running_forge, summarize, write_result  # noqa: E402

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
RELEASE_ID = re.compile(rb"id: (\d+)\nevent: release\n")
CONNECT_CONCURRENCY = 100


# -- stream client worker (a separate process) ------------------------------------------------------------


class _Stream(asyncio.Protocol):
    def __init__(self, request: bytes, worker: _Worker) -> None:
        self.request = request
        self.worker = worker
        self.buffer = b""
        self.status: int | None = None
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buffer += data
        if self.status is None:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            self.status = int(head.split(b" ", 2)[1])
            self.buffer = rest
            if not self.ready.done():
                self.ready.set_result(self.status)
        while True:
            end = self.buffer.find(b"\n\n")
            if end < 0:
                break
            block, self.buffer = self.buffer[: end + 2], self.buffer[end + 2 :]
            match = RELEASE_ID.search(block)
            if match:
                self.worker.received(int(match.group(1)), now)

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.lost += 1
        if not self.ready.done():
            self.ready.set_result(0)


class _Worker:
    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.request = (
            f"GET /api/v1/live/stream HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        self.streams: list[_Stream] = []
        self.times: dict[int, list[float]] = {}
        self.lost = 0

    def received(self, release_id: int, at: float) -> None:
        self.times.setdefault(release_id, []).append(at)

    async def open(self, count: int) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        semaphore = asyncio.Semaphore(CONNECT_CONCURRENCY)
        statuses: dict[str, int] = {}

        async def one() -> None:
            async with semaphore:
                try:
                    _, stream = await loop.create_connection(
                        lambda: _Stream(self.request, self), self.host, self.port
                    )
                    status = await asyncio.wait_for(stream.ready, 30)
                except (OSError, TimeoutError):
                    status = -1
                    stream = None
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status == 200 and stream is not None:
                    self.streams.append(stream)

        await asyncio.gather(*(one() for _ in range(count)))
        return {"open": len(self.streams), "statuses": statuses}


async def _worker_main(url: str, token: str) -> None:
    raise_fd_limit(20_000)
    worker = _Worker(url, token)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            break
        command, _, argument = line.partition(" ")
        if command == "open":
            answer: dict[str, Any] = await worker.open(int(argument))
        elif command == "times":
            answer = {"times": worker.times.get(int(argument), []), "lost": worker.lost}
        else:
            answer = {"error": f"unknown command {command}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


# -- publisher (a separate process with the FORGE's database settings) ------------------------------------


def _publisher_main(rounds: int) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anvil_forge.settings")
    django.setup()
    from django.db import transaction

    from anvil_forge.accounts.permissions import SystemActor
    from anvil_forge.prompts import services
    from anvil_forge.prompts.models import Environment, Prompt, PromptSet, SetStatus

    actor = SystemActor("bench.propagation")
    prompt_set = PromptSet.objects.get(project__organisation__slug="acme", project__slug="support-bot", slug="core")
    production = Environment.objects.get(project=prompt_set.project, slug="production")
    versions = []
    for index in range(rounds):
        prompt_set.refresh_from_db()
        if prompt_set.status == SetStatus.LOCKED:
            services.prompt_set_reopen(actor=actor, prompt_set=prompt_set)
        prompt = Prompt.objects.filter(prompt_set=prompt_set).order_by("key").first()
        services.prompt_update(
            actor=actor, prompt=prompt, base_revision=prompt.revision, template=f"{prompt.template}\nround {index}"
        )
        prompt_set.refresh_from_db()
        version = services.prompt_set_submit(actor=actor, prompt_set=prompt_set)
        versions.append(services.version_approve(actor=actor, version=version))
    sys.stdout.write(json.dumps({"prepared": len(versions)}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        if line.strip() != "publish":
            break
        # The service's own transaction becomes a savepoint of this one, so the clock is read just before
        # COMMIT: the figure includes the commit itself, and a client cannot appear to receive the event
        # before it was published (as it could if the publisher were descheduled after committing).
        with transaction.atomic():
            release = services.version_publish(actor=actor, version=versions.pop(0), environment=production)
            committing_at = time.time()
        sys.stdout.write(json.dumps({"release_id": release.pk, "committed_at": committing_at}) + "\n")
        sys.stdout.flush()


# -- the benchmark -------------------------------------------------------------------------------------------


class _Child:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.propagation", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, line: str | None) -> dict[str, Any]:
        assert self.process.stdin and self.process.stdout
        if line is not None:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"child {self.process.args} exited ({self.process.poll()})")
        return json.loads(answer)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


_HANDED = re.compile(
    r"release (\d+) handed to \d+ stream\(s\) \(\d+ written at once\): ([\d.]+) ms to \w+, ([\d.]+) ms to hand out"
)


def _forge_side_ms(log_text: str, release_ids: list[int]) -> list[float]:
    wanted = set(release_ids)
    return [
        float(match.group(2)) + float(match.group(3))
        for match in _HANDED.finditer(log_text)
        if int(match.group(1)) in wanted
    ]


def _postgres_url() -> str | None:
    url = os.environ.get("ANVIL_BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3):
            return url
    except Exception:
        return None


def measure(steps: list[int], rounds: int, workers: int) -> dict[str, Any]:
    raise_fd_limit(max(steps) * 2 + 1000)
    postgres = _postgres_url()
    database = "postgresql" if postgres else "sqlite"
    verbose = bool(os.environ.get("ANVIL_BENCH_VERBOSE"))
    # INFO: the FORGE logs, per release, its own time from announcement to every socket written.
    env = {"ANVIL_STREAM_HEARTBEAT_SECONDS": "15", "ANVIL_LOG_LEVEL": "INFO"}
    if not postgres:
        env["ANVIL_RELEASE_POLL_SECONDS"] = "0.05"
    log(f"database: {database}; steps {steps}; {rounds} publishes per step; {workers} client processes")
    results: dict[str, Any] = {"streams": {}}
    with running_forge(env=env, postgres_url=postgres) as forge:
        created = forge.cli(
            "token", "create", "acme/support-bot", "--environment", "production", "--kind", "live", "--name", "bench"
        )
        token = created.splitlines()[0].strip()
        child_env = {**forge.env, "PYTHONPATH": ROOT}
        publisher = _Child(["publisher", str(rounds * len(steps))], child_env)
        clients = [_Child(["worker", forge.url, token], child_env) for _ in range(workers)]
        try:
            log(f"publisher prepared {publisher.ask(None)['prepared']} versions")
            time.sleep(1.0)
            rss_before = rss_mb(forge.process.pid)
            opened = 0
            for step in steps:
                remaining = step - opened
                answers = [
                    client.ask(f"open {remaining // workers + (1 if i < remaining % workers else 0)}")
                    for i, client in enumerate(clients)
                ]
                opened = sum(answer["open"] for answer in answers)  # each worker answers its total
                failed = {k: v for a in answers for k, v in a["statuses"].items() if k != "200"}
                log(f"{opened} of {step} streams open; failures {failed or 'none'}")
                time.sleep(2.0)  # let the replayed events and the accept work settle
                rss_idle = rss_mb(forge.process.pid)
                latencies: list[float] = []
                per_round: list[dict[str, float]] = []
                release_ids: list[int] = []
                for _ in range(rounds):
                    published = publisher.ask("publish")
                    release_ids.append(published["release_id"])
                    deadline = time.monotonic() + 10
                    while True:  # until every open stream has the event, or 10 s
                        time.sleep(0.25)
                        times = [t for c in clients for t in c.ask(f"times {published['release_id']}")["times"]]
                        if len(times) >= opened or time.monotonic() > deadline:
                            break
                    round_ms = [(at - published["committed_at"]) * 1000 for at in times]
                    latencies += round_ms
                    if round_ms:
                        per_round.append(
                            {"p50_ms": round(percentile(round_ms, 50), 2), "p99_ms": round(percentile(round_ms, 99), 2)}
                        )
                    time.sleep(0.25)
                missing = opened * rounds - len(latencies)
                forge_side = _forge_side_ms(forge.log(), release_ids)
                summary = summarize(latencies, digits=2)
                results["streams"][str(step)] = {
                    "p50_ms": round(percentile(latencies, 50), 2) if latencies else None,
                    "p99_ms": round(percentile(latencies, 99), 2) if latencies else None,
                    "max_ms": summary["max"],
                    "streams_open": opened,
                    "samples": len(latencies),
                    "missing": missing,
                    "rss_idle_mb": round(rss_idle, 1),
                    "kb_per_idle_stream": round((rss_idle - rss_before) * 1024 / max(opened, 1), 1),
                    # Inside the FORGE: from the announcement (NOTIFY) to the event written to every socket.
                    "forge_fanout_ms": summarize(forge_side, digits=2) if forge_side else None,
                    "rounds": per_round,
                    "loadavg_1m": round(os.getloadavg()[0], 2),
                }
                log(f"{step} streams: {results['streams'][str(step)]}")
            rss_after = rss_idle
            largest = max(steps)
            results["idle_stream_memory"] = {
                "streams": largest,
                "rss_before_mb": round(rss_before, 1),
                "rss_after_mb": round(rss_after, 1),
                "kb_per_stream": round((rss_after - rss_before) * 1024 / largest, 1),
            }
        finally:
            for child in [publisher, *clients]:
                child.close()
            if verbose:
                log("FORGE log (tail):\n" + "\n".join(forge.log().splitlines()[-40:]))
    results["method"] = {
        "database": database,
        "delivery": "LISTEN/NOTIFY" if postgres else "periodic check every 0.05 s (SQLite, external publisher)",
        "rounds_per_step": rounds,
        "client_processes": workers,
        "client_loop": "uvloop (raw asyncio.Protocol sockets)",
        "latency": "client wall-clock receipt of the release event minus the publisher's clock just before COMMIT",
        "forge_fanout": "the FORGE's own log: announcement received to the event written to every stream's socket",
        "memory": "RSS of the FORGE process after the largest step idled, minus RSS before any stream, / streams",
    }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", nargs="?", default="bench", choices=["bench", "worker", "publisher"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--streams", default="100,1000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    options = parser.parse_args(argv)
    if options.role == "worker":
        try:  # the clients' own overhead is part of every figure: use the fast loop when there is one
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(_worker_main(*options.args))
        return 0
    if options.role == "publisher":
        _publisher_main(int(options.args[0]))
        return 0
    steps = sorted(int(n) for n in options.streams.split(","))
    results = measure(steps, options.rounds, options.workers)
    path = write_result("propagation", results)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

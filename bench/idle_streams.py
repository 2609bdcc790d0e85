"""Idle streams: the memory one FORGE process needs per idle LIVE stream, at 1,000 and 10,000 streams,
and whether heartbeats still arrive on time.

One FORGE (``anvil-forge serve``, one uvicorn process, demo data, SQLite) on a loopback port, with a
short heartbeat so a few heartbeat rounds fit in the time budget. Client connections are spread over
several worker processes (:mod:`bench.stream_clients`); the open-file limit is raised first with
``resource.setrlimit`` (the FORGE and the workers inherit it).

Steps: the FORGE's RSS with no stream (after a bundle GET has warmed its code paths), then 1,000
streams, settle, RSS, a heartbeat window; then 9,000 more (10,000), settle, RSS, a heartbeat window.
``kb_per_stream`` is the RSS growth over the no-stream baseline divided by the streams open; the
FORGE's CPU use while the streams are idle is measured over each window.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from typing import Any

from bench.common import (
    ROOT,
    cpu_seconds,
    finish_profile,
    log,
    raise_fd_limit,
    rss_mb,
    running_forge,
    seconds_left,
    start_profile,
    summarize,
    write_result,
)

STEPS = (1_000, 10_000)
WORKERS = 4
HEARTBEAT_SECONDS = 4.0
WINDOW_SECONDS = 2.6 * HEARTBEAT_SECONDS  # two full gaps per connection
SETTLE_SECONDS = 2.0
# Accepting a stream costs the FORGE a token check and a replay of the current releases (ORM work in its
# database threads): no new connection is started after this many seconds per step, so the run stays bounded.
CONNECT_BUDGET_S = {1_000: 30.0, 10_000: 120.0}
TARGET_MB_AT_10000 = 500
TOKEN_PATTERN = re.compile(r"anvil_live_[A-Za-z0-9_\-]+")

# The FORGE's stream settings for this benchmark (docs/protocol.md, forge settings).
FORGE_ENV = {
    "ANVIL_STREAM_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
    "ANVIL_STREAM_MAX_AGE_SECONDS": "3600",  # no reconnect churn while measuring
    "ANVIL_STREAM_MAX_CONNECTIONS": "20000",  # the per-process limit must not answer 503 below 10,000
    "ANVIL_LOG_LEVEL": "WARNING",
}


def create_token(forge: Any) -> str:
    output = forge.cli(
        "token", "create", "acme/support-bot", "--environment", "production", "--kind", "live", "--name", "bench"
    )
    match = TOKEN_PATTERN.search(output)
    if not match:
        raise RuntimeError(f"no live token in the output of `anvil-forge token create`:\n{output}")
    return match.group(0)


class Workers:
    """The client worker processes, driven in lock-step over their stdin/stdout."""

    def __init__(self, url: str, token: str, count: int) -> None:
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.stream_clients", url, token, str(HEARTBEAT_SECONDS)],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]

    def ask(self, commands: list[str]) -> list[dict[str, Any]]:
        for process, command in zip(self.processes, commands, strict=True):
            assert process.stdin is not None
            process.stdin.write(command + "\n")
            process.stdin.flush()
        answers = []
        for process in self.processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                raise RuntimeError("a stream client worker died")
            answers.append(json.loads(line))
        return answers

    def all(self, command: str) -> list[dict[str, Any]]:
        return self.ask([command] * len(self.processes))

    def close(self) -> None:
        for process in self.processes:
            try:
                if process.poll() is None:
                    assert process.stdin is not None
                    process.stdin.write("quit\n")
                    process.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def warm_up(forge: Any, token: str) -> None:
    request = urllib.request.Request(
        forge.url + "/api/v1/live/bundles/core", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def main() -> int:
    limit = raise_fd_limit(max(STEPS) * 2 + 1_000)
    log(f"idle_streams: open-file limit {limit}")
    if limit < max(STEPS) + 500:
        log(f"idle_streams: the open-file limit {limit} is too low for {max(STEPS)} streams")
        return 2
    steps: dict[str, Any] = {}
    with running_forge(env=FORGE_ENV) as forge:
        pid = forge.process.pid
        token = create_token(forge)
        warm_up(forge, token)
        time.sleep(1.0)
        baseline_mb = rss_mb(pid)
        log(f"idle_streams: FORGE pid {pid}, RSS with no stream {baseline_mb:.1f} MB")
        workers = Workers(forge.url, token, WORKERS)
        try:
            opened = 0
            for target in STEPS:
                more = target - opened
                share = [more // WORKERS + (1 if i < more % WORKERS else 0) for i in range(WORKERS)]
                started = time.monotonic()
                cpu_connect_before = cpu_seconds(pid)
                # Leave time for this step's settle and heartbeat window, and to shut down, before the limit.
                budget = max(5.0, min(CONNECT_BUDGET_S[target], seconds_left() - SETTLE_SECONDS - WINDOW_SECONDS - 20))
                profiled = target == STEPS[0]  # where the FORGE's time goes while it accepts streams
                profiler = start_profile(pid, min(budget, 6.0), f"idle_streams_accept_{target}") if profiled else None
                answers = workers.ask([f"open {n} {budget:.1f}" for n in share])
                connect_s = time.monotonic() - started
                connect_cpu_s = cpu_seconds(pid) - cpu_connect_before
                accept_profile = finish_profile(profiler, f"idle_streams_accept_{target}")
                opened = target
                open_now = sum(a["open"] for a in answers)
                failed = sum(a["failed"] for a in answers)
                not_attempted = sum(a["not_attempted"] for a in answers)
                statuses: dict[str, int] = {}
                for answer in answers:
                    for key, value in answer["statuses"].items():
                        statuses[key] = statuses.get(key, 0) + value
                log(
                    f"idle_streams: {open_now} open ({failed} failed: {statuses}; {not_attempted} not attempted "
                    f"within the connect budget) in {connect_s:.1f} s"
                )
                time.sleep(SETTLE_SECONDS)
                rss = rss_mb(pid)
                workers.all("mark")
                cpu_before = cpu_seconds(pid)
                time.sleep(WINDOW_SECONDS)
                cpu_used = cpu_seconds(pid) - cpu_before
                stats = workers.all("stats")
                rss_after_window = rss_mb(pid)
                gaps = [g for s in stats for g in s["gaps"]]
                step = {
                    "streams_requested": target,
                    "streams_open": sum(s["open"] for s in stats),
                    "failed": failed,
                    "not_attempted": not_attempted,
                    "statuses": statuses,
                    "connect_seconds": round(connect_s, 2),
                    "accept_ms_per_stream": round(connect_s * 1000 / max(more - not_attempted, 1), 2),
                    "forge_cpu_ms_per_accept": round(connect_cpu_s * 1000 / max(more - not_attempted, 1), 2),
                    "rss_mb": round(max(rss, rss_after_window), 1),
                    "rss_growth_mb": round(max(rss, rss_after_window) - baseline_mb, 1),
                    "kb_per_stream": round((max(rss, rss_after_window) - baseline_mb) * 1024 / max(open_now, 1), 1),
                    "heartbeat_interval_s": HEARTBEAT_SECONDS,
                    "heartbeat_gap_s": summarize(gaps, 3),
                    "heartbeat_late_over_1s": sum(1 for g in gaps if g > HEARTBEAT_SECONDS + 1.0),
                    "overdue_connections": sum(s["overdue"] for s in stats),
                    # On time: every open stream had a heartbeat in the window, none more than 1 s late.
                    "heartbeats_on_time": bool(gaps)
                    and sum(s["overdue"] for s in stats) == 0
                    and sum(s["never_heartbeat_since_mark"] for s in stats) == 0
                    and all(g <= HEARTBEAT_SECONDS + 1.0 for g in gaps),
                    "closed_by_server": sum(s["closed"] for s in stats),
                    "forge_cpu_percent_idle": round(100 * cpu_used / WINDOW_SECONDS, 1),
                    "window_seconds": WINDOW_SECONDS,
                }
                if accept_profile:
                    step["profile_accept"] = accept_profile
                steps[str(target)] = step
                log(f"idle_streams: {target}: {json.dumps({k: v for k, v in step.items() if k != 'statuses'})}")
        finally:
            workers.close()
    ten_k = steps.get(str(max(STEPS)), {})
    figures = {
        "method": f"one FORGE process (uvicorn), clients in {WORKERS} processes; RSS from /proc; heartbeat every "
        f"{HEARTBEAT_SECONDS} s; RSS growth over the no-stream baseline divided by the open streams",
        "baseline_rss_mb": round(baseline_mb, 1),
        "streams": steps,
        "target_mb_at_10000": TARGET_MB_AT_10000,
        "meets_target": bool(ten_k) and ten_k.get("streams_open") == max(STEPS)
        and ten_k.get("rss_mb", 1e9) < TARGET_MB_AT_10000,
    }
    path = write_result("idle_streams", figures)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

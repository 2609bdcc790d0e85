"""A fleet under load against a real FORGE (issue 18): check-in floods, what the FORGE shows meanwhile, open
files and memory around a flood, stream churn, and a clean shutdown with many streams. Bounded in count and
time, loopback only; the figures of record come from ``bench/fleet.py``."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from bench import fleet
from bench.common import rss_mb
from tests.integration.test_instance_processes import instance_blocks, make_token, sign_in

pytestmark = pytest.mark.integration


def test_a_checkin_flood_is_answered_at_once_and_leaves_no_files_or_memory_behind(make_forge):
    forge = make_forge(env={"ANVIL_LOG_LEVEL": "WARNING"})
    token = make_token(forge)
    pid = forge.process.pid
    # The first flood registers the instances and warms every path (threads, connections, caches).
    first = asyncio.run(fleet.flood(forge.port, token, rate=200, seconds=3, instances=200))
    assert first["errors"] == 0, first
    time.sleep(1)
    files, memory = fleet.open_files(pid), rss_mb(pid)
    # Then the same 200 instances keep checking in once a second each.
    second = asyncio.run(fleet.flood(forge.port, token, rate=200, seconds=6, instances=200))
    time.sleep(2)
    assert second["errors"] == 0, second
    assert second["per_second"] >= 180, second
    assert second["p99_ms"] < 250, second  # the goal is 100 ms (bench/fleet.py); room for a busy machine
    assert fleet.open_files(pid) - files <= 3, (files, fleet.open_files(pid))
    assert rss_mb(pid) - memory < 10, (memory, rss_mb(pid))


def test_what_the_forge_shows_follows_the_checkins_within_a_second(make_forge):
    forge = make_forge()
    token = make_token(forge)
    api = httpx.Client(base_url=forge.url, timeout=20, headers={"Authorization": f"Bearer {token}"})
    viewer = sign_in(forge)
    body = {"instance_id": "shown-1", "process_id": 7, "name": "shown-1", "host": "h", "versions": {"core": 1}}
    sent = time.monotonic()
    assert api.post("/api/v1/live/checkin", json=body).status_code == 200
    while "shown-1" not in instance_blocks(viewer.get("/o/acme/instances/").text):
        assert time.monotonic() - sent < 1.0, "the check-in was not shown within a second"
        time.sleep(0.05)


def test_checkin_errors_are_answered_as_before(make_forge):
    forge = make_forge()
    token = make_token(forge)
    api = httpx.Client(base_url=forge.url, timeout=20)
    assert api.post("/api/v1/live/checkin", json={"instance_id": "x"}).status_code == 401
    auth = {"Authorization": f"Bearer {token}"}
    refused = api.post("/api/v1/live/checkin", json={"instance_id": "x", "bogus": 1}, headers=auth)
    assert refused.status_code == 400 and "bogus" in refused.json()["error"]
    assert api.get("/api/v1/live/checkin", headers=auth).status_code == 405
    big = api.post("/api/v1/live/checkin", content=b"x" * 300_000, headers=auth)
    assert big.status_code == 413


def test_sigterm_ends_every_stream_with_a_retry_and_exits_quickly_without_a_traceback(make_forge):
    forge = make_forge()
    token = make_token(forge)

    async def run() -> tuple[list[fleet.Stream], float]:
        streams = await fleet.open_streams(forge.port, token, 500)
        started = time.monotonic()
        forge.process.terminate()
        await asyncio.gather(*(stream.read_to_end(10) for stream in streams))
        while forge.process.poll() is None and time.monotonic() - started < 10:
            await asyncio.sleep(0.02)
        return streams, time.monotonic() - started

    streams, seconds = asyncio.run(run())
    assert len(streams) == 500
    assert seconds < 3, seconds
    assert all(stream.ended_properly for stream in streams)
    assert "Traceback" not in forge.log() and "CancelledError" not in forge.log()


def test_streams_opened_and_closed_leave_no_memory_behind(make_forge):
    forge = make_forge(env={"ANVIL_LOG_LEVEL": "WARNING"})
    token = make_token(forge)
    pid = forge.process.pid
    deadline = time.monotonic() + 120
    asyncio.run(fleet.churn(forge.port, token, rounds=1, per_round=500))  # warm-up
    time.sleep(1)
    before = rss_mb(pid)
    opened = asyncio.run(fleet.churn(forge.port, token, rounds=6, per_round=500))
    time.sleep(2)
    assert sum(opened) == 3000
    assert time.monotonic() < deadline
    assert rss_mb(pid) < before * 1.05, (before, rss_mb(pid))

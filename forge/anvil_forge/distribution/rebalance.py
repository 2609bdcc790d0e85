"""Rebalancing LIVE streams across FORGE processes that share one PostgreSQL database.

A stream stays on the process it first reached until it ends (maximum age, one hour by default). After a
rolling restart the processes restarted last hold few streams and the others many (36 / 22 / 1), and a
load balancer cannot move an open connection. So every process, once per tick
(``ANVIL_STREAM_REBALANCE_SECONDS``, jittered), tells the others how many streams it holds (a NOTIFY on
:data:`LOAD_CHANNEL`, heard by the broadcaster's LISTEN connection) and looks at what it heard: a process
above ``(1 + ANVIL_STREAM_REBALANCE_MARGIN)`` times the mean closes half of its excess, spread over the
coming tick, each stream with a jittered ``retry:``, so its clients come back through the load balancer
and land wherever it sends them. A process below the threshold never sheds, so the processes do not
trade streams back and forth; a process not heard for three ticks (killed, restarted) no longer counts.

On SQLite there is one FORGE process and nothing to balance: this does not run.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from anvil_forge.distribution.broadcast import Broadcaster, Subscriber

logger = logging.getLogger(__name__)

LOAD_CHANNEL = "anvil_stream_load"
# Shed only when the excess is worth a reconnect: two streams above the mean on a small fleet is noise.
MIN_EXCESS = 2
# The share of the excess closed per tick: the shed clients also land back here (1 in n with round robin),
# so half per tick converges within a few ticks without overshooting the mean.
SHED_SHARE = 0.5
# A process not heard for this many ticks is gone (killed, restarted under another id).
PEER_TTL_TICKS = 3
# Closes are spread over this share of the tick, so they are done before the next count is taken.
SPREAD_SHARE = 0.8


class Rebalancer:
    """One per process, driven by the broadcaster: :meth:`heard` for each report, :meth:`run` as a task."""

    def __init__(self, broadcaster: Broadcaster) -> None:
        self.broadcaster = broadcaster
        self.process_id = secrets.token_hex(6)
        self.peers: dict[str, tuple[int, float]] = {}  # process id -> (open streams, when heard; monotonic)
        self.pending: set[Subscriber] = set()  # chosen for shedding, not closed yet
        self.report: Callable[[str], Awaitable[None]] = _notify_load

    def heard(self, payload: str) -> None:
        """A report ``<process id>:<open streams>`` from another process (our own are ignored)."""
        process_id, _, count = payload.partition(":")
        if process_id and process_id != self.process_id and count.isdigit() and len(count) < 10:
            self.peers[process_id] = (int(count), time.monotonic())

    def plan(self, own: int, *, interval: float, margin: float, now: float | None = None) -> tuple[int, float, int]:
        """``(streams to close this tick, the mean, processes counted)`` for a process holding ``own``."""
        now = time.monotonic() if now is None else now
        horizon = now - PEER_TTL_TICKS * interval
        for process_id in [p for p, (_, at) in self.peers.items() if at < horizon]:
            del self.peers[process_id]
        processes = len(self.peers) + 1
        if processes < 2:
            return 0, float(own), 1
        mean = (own + sum(count for count, _ in self.peers.values())) / processes
        excess = own - mean
        if own <= (1 + margin) * mean or excess < MIN_EXCESS:
            return 0, mean, processes
        return math.ceil(excess * SHED_SHARE), mean, processes

    def shed(self, count: int, *, within: float) -> int:
        """Close ``count`` open streams chosen at random, each at its own moment within ``within`` seconds."""
        from anvil_forge.distribution.broadcast import retry_frame
        from anvil_forge.distribution.stream import reconnect_ms

        candidates = [
            subscriber
            for subscribers in self.broadcaster.by_environment.values()
            for subscriber in subscribers
            if not subscriber.closed and subscriber not in self.pending
        ]
        chosen = random.sample(candidates, min(count, len(candidates)))
        loop = asyncio.get_running_loop()

        def close(subscriber: Subscriber) -> None:
            self.pending.discard(subscriber)
            subscriber.close(retry_frame(reconnect_ms()))

        for subscriber in chosen:
            self.pending.add(subscriber)
            loop.call_later(random.uniform(0, within), close, subscriber)
        return len(chosen)

    async def run(self) -> None:
        """Every tick: report this process's open streams, then shed some if it holds far more than the mean."""
        from anvil_forge.distribution.stream import draining

        interval = settings.ANVIL_STREAM_REBALANCE_SECONDS
        margin = max(0.0, settings.ANVIL_STREAM_REBALANCE_MARGIN)
        while True:
            await asyncio.sleep(interval * random.uniform(0.9, 1.1))
            if draining.is_set():
                continue  # shutting down: the others stop counting this process after a few ticks
            self.pending = {subscriber for subscriber in self.pending if not subscriber.closed}
            own = max(0, self.broadcaster.count - len(self.pending))
            try:
                await self.report(f"{self.process_id}:{own}")
            except Exception as exc:
                logger.warning("could not report this process's open streams (%s); retrying next tick", exc)
            to_close, mean, processes = self.plan(own, interval=interval, margin=margin)
            if to_close:
                closed = self.shed(to_close, within=interval * SPREAD_SHARE)
                logger.info(
                    "rebalancing: %d open stream(s) here, %.1f on average over %d processes; "
                    "closing %d with a retry hint over the next %.1f s",
                    own,
                    mean,
                    processes,
                    closed,
                    interval * SPREAD_SHARE,
                )


async def _notify_load(payload: str) -> None:
    from anvil_forge.distribution.broadcast import run_in_db_thread

    await run_in_db_thread(_notify_load_sync, payload)


def _notify_load_sync(payload: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [LOAD_CHANNEL, payload])

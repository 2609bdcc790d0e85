"""The rebalancer's arithmetic and its shedding, without a database: who sheds, how many, and how spread."""

from __future__ import annotations

import asyncio
import time

from anvil_forge.distribution.broadcast import Broadcaster
from anvil_forge.distribution.rebalance import Rebalancer


def rebalancer_hearing(*counts: int) -> Rebalancer:
    rebalancer = Rebalancer(Broadcaster())
    for number, count in enumerate(counts):
        rebalancer.heard(f"peer{number}:{count}")
    return rebalancer


def test_a_process_far_above_the_mean_sheds_half_its_excess():
    to_close, mean, processes = rebalancer_hearing(22, 1).plan(36, interval=10, margin=0.2)
    assert processes == 3 and round(mean, 2) == 19.67
    assert to_close == 9  # ceil((36 - 19.67) / 2)


def test_a_process_near_or_below_the_mean_sheds_nothing():
    assert rebalancer_hearing(36, 1).plan(22, interval=10, margin=0.2)[0] == 0  # 22 <= 1.2 x 19.67
    assert rebalancer_hearing(36, 22).plan(1, interval=10, margin=0.2)[0] == 0
    assert rebalancer_hearing(20, 20).plan(23, interval=10, margin=0.2)[0] == 0


def test_a_small_excess_is_not_worth_a_reconnect():
    assert rebalancer_hearing(0).plan(3, interval=10, margin=0.2)[0] == 0  # 1.5 above a mean of 1.5


def test_alone_or_hearing_nobody_a_process_sheds_nothing():
    assert Rebalancer(Broadcaster()).plan(10_000, interval=10, margin=0.2) == (0, 10_000.0, 1)


def test_processes_not_heard_for_three_ticks_no_longer_count():
    rebalancer = rebalancer_hearing(0, 0)
    later = time.monotonic() + 31
    assert rebalancer.plan(30, interval=10, margin=0.2, now=later) == (0, 30.0, 1)
    assert rebalancer.peers == {}


def test_its_own_reports_and_garbage_are_ignored():
    rebalancer = Rebalancer(Broadcaster())
    for payload in (f"{rebalancer.process_id}:5", "x", ":3", "p:-1", "p:", "p:1e9", "p:99999999999"):
        rebalancer.heard(payload)
    assert rebalancer.peers == {}


def test_shedding_closes_the_chosen_streams_with_a_retry_hint_spread_over_the_window(settings):
    settings.ANVIL_STREAM_MAX_CONNECTIONS = 100

    async def scenario() -> None:
        broadcaster = Broadcaster()
        rebalancer = Rebalancer(broadcaster)
        subscribers = [broadcaster.subscribe(environment_id=1 + n % 3, token_id=1) for n in range(40)]
        closed_at: dict[int, float] = {}
        started = time.monotonic()
        assert rebalancer.shed(10, within=0.5) == 10
        assert rebalancer.shed(100, within=0.5) == 30, "the streams already chosen are not chosen twice"
        while len(closed_at) < 40 and time.monotonic() - started < 3:
            for index, subscriber in enumerate(subscribers):
                if subscriber.closed and index not in closed_at:
                    closed_at[index] = time.monotonic() - started
            await asyncio.sleep(0.005)
        assert len(closed_at) == 40
        assert all(subscriber.final.startswith(b"retry: ") for subscriber in subscribers)
        assert max(closed_at.values()) - min(closed_at.values()) > 0.25, "spread, not all at once"
        assert max(closed_at.values()) < 1.0

    asyncio.run(scenario())

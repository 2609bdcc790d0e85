"""Concurrent token cache misses share one database read (``caches.SingleFlight``, issue 18's check-in flood)."""

from __future__ import annotations

import asyncio

import pytest

from anvil_forge.distribution.caches import SingleFlight


def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_misses_for_one_key_read_once_and_all_get_the_answer():
    async def scenario():
        flights = SingleFlight()
        reads = []
        release = asyncio.Event()

        async def read():
            reads.append(1)
            await release.wait()
            return "token"

        waiters = [asyncio.create_task(flights.run("digest", read)) for _ in range(40)]
        await asyncio.sleep(0.01)
        release.set()
        answers = await asyncio.gather(*waiters)
        return reads, answers, len(flights)

    reads, answers, left = run(scenario())
    assert len(reads) == 1
    assert answers == ["token"] * 40
    assert left == 0  # nothing kept once it landed: the next miss reads again


def test_a_failed_read_fails_every_waiter_and_the_next_miss_reads_again():
    async def scenario():
        flights = SingleFlight()
        calls = []

        async def failing():
            calls.append(1)
            await asyncio.sleep(0.01)
            raise ConnectionError("database down")

        results = await asyncio.gather(*(flights.run("k", failing) for _ in range(5)), return_exceptions=True)

        async def working():
            calls.append(1)
            return 7

        return calls, results, await flights.run("k", working)

    calls, results, again = run(scenario())
    assert all(isinstance(result, ConnectionError) for result in results)
    assert len(calls) == 2 and again == 7


def test_a_cancelled_waiter_cancels_neither_the_read_nor_the_others():
    async def scenario():
        flights = SingleFlight()
        release = asyncio.Event()

        async def read():
            await release.wait()
            return "ok"

        first = asyncio.create_task(flights.run("k", read))
        second = asyncio.create_task(flights.run("k", read))
        await asyncio.sleep(0.01)
        first.cancel()  # the client that missed first went away
        await asyncio.sleep(0.01)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await second

    assert run(scenario()) == "ok"


def test_different_keys_read_separately():
    async def scenario():
        flights = SingleFlight()
        reads = []

        async def read(name):
            reads.append(name)
            await asyncio.sleep(0.01)
            return name

        answers = await asyncio.gather(
            flights.run(("digest", 1), lambda: read("before")), flights.run(("digest", 2), lambda: read("after"))
        )
        return reads, answers

    reads, answers = run(scenario())
    assert sorted(reads) == ["after", "before"] and answers == ["before", "after"]


def test_a_read_left_by_a_loop_that_ended_is_not_awaited_by_the_next_loop():
    flights = SingleFlight()

    async def abandoned():
        never = asyncio.Event()

        async def read():
            await never.wait()

        waiter = asyncio.ensure_future(flights.run("k", read))
        await asyncio.sleep(0)  # the read is in flight when this loop ends (cancelling the waiter)
        assert not waiter.done()

    run(abandoned())

    async def fresh():
        async def read():
            return "new"

        return await flights.run("k", read)

    assert run(fresh()) == "new"

"""The stream broadcaster on its own: fan-out by environment, bounded buffers, revocation, heartbeats,
maximum age, the connection limit and the periodic check. Loaders are replaced, so no database is used."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from anvil_forge.distribution.broadcast import (
    HEARTBEAT_FRAME,
    MAX_PENDING_FRAMES,
    REVOKED_FRAME,
    Broadcaster,
    release_frame,
)


def make_broadcaster(releases: dict[int, int] | None = None, inactive: set[int] | None = None) -> Broadcaster:
    """A broadcaster whose releases are ``{release id: environment id}``, with counted loads."""
    releases = releases if releases is not None else {}
    broadcaster = Broadcaster()
    broadcaster.loads = []  # type: ignore[attr-defined]

    def load_release(release_id):
        broadcaster.loads.append(release_id)  # type: ignore[attr-defined]
        if release_id not in releases:
            return None
        return releases[release_id], release_frame(release_id, b'{"release_id":%d}' % release_id)

    broadcaster.load_release = load_release
    broadcaster.load_recent = lambda: [(rid, env) for rid, env in releases.items() if rid > 100]
    broadcaster.load_inactive_tokens = lambda ids: {i for i in ids if i in (inactive or set())}
    return broadcaster


async def drain(subscriber, count: int, timeout: float = 2.0) -> list[bytes]:
    frames = []
    for _ in range(count):
        item = await asyncio.wait_for(subscriber.next(), timeout)
        if item is None:
            break
        frames.append(item[1])
    return frames


@pytest.fixture(autouse=True)
def _quick(settings):
    settings.ANVIL_STREAM_HEARTBEAT_SECONDS = 0.05
    settings.ANVIL_RELEASE_POLL_SECONDS = 0.05
    settings.ANVIL_STREAM_MAX_AGE_SECONDS = 3600
    settings.ANVIL_STREAM_MAX_CONNECTIONS = 100


def test_a_release_reaches_every_stream_of_its_environment_and_no_other():
    async def scenario():
        broadcaster = make_broadcaster({7: 1})
        await broadcaster.start(listen=False)
        try:
            same = [broadcaster.subscribe(environment_id=1, token_id=1) for _ in range(3)]
            other = broadcaster.subscribe(environment_id=2, token_id=2)
            broadcaster.announce("release", 7)
            for subscriber in same:
                [frame] = await drain(subscriber, 1)
                assert frame.startswith(b"id: 7\nevent: release\n")
            other.close(None)
            assert await other.next() is None
        finally:
            await broadcaster.stop()

    asyncio.run(scenario())


def test_the_same_release_announced_twice_is_loaded_and_sent_once():
    async def scenario():
        broadcaster = make_broadcaster({7: 1})
        await broadcaster.start(listen=False)
        try:
            subscriber = broadcaster.subscribe(environment_id=1, token_id=1)
            broadcaster.announce("release", 7)
            broadcaster.announce("release", 7)  # by NOTIFY and by on_commit, say
            await drain(subscriber, 1)
            await asyncio.sleep(0.1)
            assert broadcaster.loads == [7]
            assert [f for _, f in subscriber.pending if f != HEARTBEAT_FRAME] == []
        finally:
            await broadcaster.stop()

    asyncio.run(scenario())


def test_a_release_sent_on_connect_is_not_sent_again_when_its_announcement_arrives():
    broadcaster = make_broadcaster()
    subscriber = broadcaster.subscribe(environment_id=1, token_id=1)
    subscriber.replayed = frozenset({7})
    subscriber.offer(7, b"again")
    subscriber.offer(8, b"new")
    assert list(subscriber.pending) == [(8, b"new")]


def test_a_stream_that_stops_reading_is_dropped_without_holding_up_the_others():
    broadcaster = make_broadcaster()
    slow = broadcaster.subscribe(environment_id=1, token_id=1)
    fast = broadcaster.subscribe(environment_id=1, token_id=1)
    for n in range(MAX_PENDING_FRAMES + 1):
        broadcaster.deliver(1, n + 1, b"frame")
        fast.pending.clear()  # the fast one keeps up
    assert slow.closed and not fast.closed
    assert len(slow.pending) == 0


def test_revoking_a_token_closes_its_streams_with_a_revoked_event_and_leaves_others_open():
    async def scenario():
        broadcaster = make_broadcaster()
        revoked = broadcaster.subscribe(environment_id=1, token_id=5)
        kept = broadcaster.subscribe(environment_id=1, token_id=6)
        broadcaster.announce("revoke", 5)
        assert await revoked.next() is None
        assert revoked.final == REVOKED_FRAME
        assert not kept.closed

    asyncio.run(scenario())


def test_announcements_from_another_thread_reach_the_loop():
    async def scenario():
        broadcaster = make_broadcaster({9: 1})
        await broadcaster.start(listen=False)
        try:
            subscriber = broadcaster.subscribe(environment_id=1, token_id=1)
            thread = threading.Thread(target=broadcaster.announce_threadsafe, args=("release", 9))
            thread.start()
            thread.join()
            frames = await drain(subscriber, 1)
            assert frames[0].startswith(b"id: 9\n")
        finally:
            await broadcaster.stop()

    asyncio.run(scenario())


def test_announcing_without_a_running_broadcaster_does_nothing():
    make_broadcaster().announce_threadsafe("release", 1)  # the command line: no loop, no error


def test_one_heartbeat_task_feeds_every_idle_stream():
    async def scenario():
        broadcaster = make_broadcaster()
        await broadcaster.start(listen=False)
        try:
            subscribers = [broadcaster.subscribe(environment_id=e, token_id=1) for e in (1, 2, 3)]
            for subscriber in subscribers:
                assert await drain(subscriber, 1) == [HEARTBEAT_FRAME]
            assert len(broadcaster._tasks) == 3  # delivery, heartbeat, safety net: not one per stream
        finally:
            await broadcaster.stop()

    asyncio.run(scenario())


def test_a_stream_past_its_maximum_age_is_closed_with_a_retry_hint(settings):
    settings.ANVIL_STREAM_MAX_AGE_SECONDS = 0.1

    async def scenario():
        broadcaster = make_broadcaster()
        await broadcaster.start(listen=False)
        try:
            subscriber = broadcaster.subscribe(environment_id=1, token_id=1)
            started = time.monotonic()
            while await asyncio.wait_for(subscriber.next(), 2) is not None:
                pass
            assert time.monotonic() - started < 1
            assert subscriber.final.startswith(b"retry: ")
        finally:
            await broadcaster.stop()

    asyncio.run(scenario())


def test_over_the_connection_limit_subscribe_refuses(settings):
    settings.ANVIL_STREAM_MAX_CONNECTIONS = 2
    broadcaster = make_broadcaster()
    first = broadcaster.subscribe(environment_id=1, token_id=1)
    assert broadcaster.subscribe(environment_id=1, token_id=1) is not None
    assert broadcaster.subscribe(environment_id=1, token_id=1) is None
    broadcaster.unsubscribe(first)
    assert broadcaster.subscribe(environment_id=1, token_id=1) is not None
    assert broadcaster.count == 2


def test_the_periodic_check_delivers_releases_nobody_announced_and_closes_revoked_tokens_streams():
    async def scenario():
        releases: dict[int, int] = {}
        broadcaster = make_broadcaster(releases, inactive={42})
        await broadcaster.start(listen=False)
        try:
            subscriber = broadcaster.subscribe(environment_id=1, token_id=1)
            revoked = broadcaster.subscribe(environment_id=1, token_id=42)
            releases[101] = 1  # committed by another process, no NOTIFY (SQLite)
            frames = []
            while not any(f.startswith(b"id: 101") for f in frames):
                frames += await drain(subscriber, 1)
            assert revoked.closed and revoked.final == REVOKED_FRAME
        finally:
            await broadcaster.stop()

    asyncio.run(scenario())


def test_direct_writes_are_used_when_nothing_is_queued_and_order_is_kept_when_something_is():
    broadcaster = make_broadcaster()
    subscriber = broadcaster.subscribe(environment_id=1, token_id=1)
    written: list[bytes] = []
    accepting = [True]
    subscriber.direct = lambda frame: accepting[0] and (written.append(frame) or True)

    assert broadcaster.deliver(1, 1, b"one") == (1, 1)
    accepting[0] = False  # the socket is full: the next frame waits in the buffer
    broadcaster.deliver(1, 2, b"two")
    accepting[0] = True
    broadcaster.deliver(1, 3, b"three")  # must not overtake "two"

    assert written == [b"one"]
    assert [frame for _, frame in subscriber.pending] == [b"two", b"three"]


def test_a_prebuilt_event_is_delivered_without_loading_the_release():
    async def scenario():
        broadcaster = make_broadcaster({})
        await broadcaster.start(listen=False)
        try:
            subscriber = broadcaster.subscribe(environment_id=3, token_id=1)
            broadcaster.announce("release", 12, (3, b'{"release_id":12}'))
            [frame] = await drain(subscriber, 1)
            assert frame == b'id: 12\nevent: release\ndata: {"release_id":12}\n\n'
            assert broadcaster.loads == []
        finally:
            await broadcaster.stop()

    asyncio.run(scenario())


def test_a_prebuilt_event_naming_another_forge_url_is_rebuilt_here(settings):
    settings.ANVIL_PUBLIC_URL = "https://forge.example.com"

    async def scenario():
        broadcaster = make_broadcaster({12: 3})
        await broadcaster.start(listen=False)
        try:
            subscriber = broadcaster.subscribe(environment_id=3, token_id=1)
            broadcaster.announce("release", 12, (3, b'{"bundle":{"forge":"http://127.0.0.1:8000"}}'))
            [frame] = await drain(subscriber, 1)
            assert frame == release_frame(12, b'{"release_id":12}')
            assert broadcaster.loads == [12]
        finally:
            await broadcaster.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("size", [10, 20_000])
def test_notify_payloads_round_trip_and_big_events_travel_as_ids(size):
    from anvil_forge.distribution.events import MAX_NOTIFY_PAYLOAD, notify_payload, parse_notify_payload

    data = ('{"x":"' + "é" * size + '"}').encode()
    payload = notify_payload("release", 5, (2, data))
    assert len(payload.encode()) <= MAX_NOTIFY_PAYLOAD
    expected = (2, data) if size == 10 else None
    assert parse_notify_payload(payload) == ("release", 5, expected)
    assert parse_notify_payload("revoke:9") == ("revoke", 9, None)
    assert parse_notify_payload("garbage") is None


def test_the_frames_sent_on_connect_are_read_once_and_reread_after_a_release_of_that_environment():
    async def scenario():
        broadcaster = make_broadcaster({7: 1})
        reads = []
        current = {1: [(5, b"five")], 2: [(6, b"six")]}

        def load_current(environment_id):
            reads.append(environment_id)
            return list(current[environment_id])

        broadcaster.load_current = load_current
        assert await broadcaster.current_frames(1) == [(5, b"five")]
        assert await broadcaster.current_frames(1) == [(5, b"five")]
        assert await broadcaster.current_frames(2) == [(6, b"six")]
        assert reads == [1, 2]

        current[1] = [(7, b"seven")]
        broadcaster.deliver(1, 7, b"seven")  # a release of environment 1 went out
        assert await broadcaster.current_frames(1) == [(7, b"seven")]
        assert await broadcaster.current_frames(2) == [(6, b"six")]
        assert reads == [1, 2, 1]

    asyncio.run(scenario())

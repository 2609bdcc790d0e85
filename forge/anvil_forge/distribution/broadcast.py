"""The in-process broadcaster behind ``/api/v1/live/stream``: one per FORGE process, on the server's loop.

Subscribers (one per open stream) are indexed by environment and by token. A release reaches them as one
pre-built SSE frame, appended to each subscriber's bounded buffer; a subscriber whose buffer overflows (a
client that stopped reading) is dropped. Background tasks, one each for the whole process:

* the delivery loop: turns announced release ids into frames (database work in a thread), in order;
* the heartbeat: one comment frame to every stream every ``ANVIL_STREAM_HEARTBEAT_SECONDS``, and closing
  the streams past their maximum age (with a ``retry`` hint), so there is no timer per connection;
* the safety net: every ``ANVIL_RELEASE_POLL_SECONDS``, the releases of the last minutes that were not
  announced (NOTIFY is not replayed; SQLite has none) and the tokens of open streams that were revoked or
  expired meanwhile;
* on PostgreSQL, the LISTEN task that hears other processes' publishes and revocations, and their stream
  counts; and the rebalancer, which reports this process's and sheds streams when it holds far more than the
  mean (:mod:`.rebalance`);
* on SQLite, the change check: ``PRAGMA data_version`` every ``ANVIL_CHANGE_CHECK_SECONDS`` (20 ms) on a
  connection of its own, which changes when any other connection commits (the ``anvil-forge`` command, or
  this process's pages); when the commit changed what the LIVE API serves (a release, a revoked token, a
  review, an environment's review setting: see :class:`DataVersion`), the LIVE API's caches are emptied and
  the safety net's check runs at once, so a publish from another process is out within tens of
  milliseconds, not at the next periodic check.

Every publish and revocation heard here also empties the LIVE API's caches (:mod:`.caches`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

from django import db
from django.conf import settings
from django.utils import timezone

from anvil_forge.distribution.caches import live_caches
from anvil_forge.distribution.events import CHANNEL, RELEASE, REVOKE, parse_notify_payload
from anvil_forge.distribution.rebalance import LOAD_CHANNEL, Rebalancer

logger = logging.getLogger(__name__)

T = TypeVar("T")

HEARTBEAT_FRAME = b": heartbeat\n\n"
REVOKED_FRAME = b'event: revoked\ndata: {"reason":"token revoked"}\n\n'
MAX_PENDING_FRAMES = 64
LOOK_BACK = timedelta(minutes=5)
MAX_CACHED_ENVIRONMENTS = 1000
CURRENT_FRAMES_MAX_AGE = 30.0

# Database work off the event loop: a few threads, each with its own (kept) Django connection.
_db_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="anvil.stream-db")


# Raised when the database under the FORGE changed (the SQLite file moved or was replaced): each database thread
# closes its kept connection before its next call, so it opens the database that is there now.
_db_epoch = 0
_thread_epoch = threading.local()


def _db_call(fn: Callable[..., T], *args: Any) -> T:
    # SQLite: the file's identity is checked on every call too, so a move noticed by nobody yet (the change
    # check runs every 20 ms) is never read through a connection to the old file.
    identity = _file_identity(str(db.connection.settings_dict["NAME"])) if db.connection.vendor == "sqlite" else None
    if getattr(_thread_epoch, "value", 0) != _db_epoch or getattr(_thread_epoch, "identity", identity) != identity:
        db.connection.close()
        _thread_epoch.value = _db_epoch
    _thread_epoch.identity = identity
    try:
        return fn(*args)
    except db.Error:  # DatabaseError, and InterfaceError for a connection that is already gone
        db.connection.close()  # reconnect on the next call rather than reuse a broken connection
        raise


async def run_in_db_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` (Django ORM work) in the stream's database threads."""
    return await asyncio.get_running_loop().run_in_executor(_db_executor, _db_call, fn, *args)


def release_frame(release_id: int, data: bytes) -> bytes:
    return b"id: %d\nevent: release\ndata: %s\n\n" % (release_id, data)


def retry_frame(milliseconds: int) -> bytes:
    return b"retry: %d\n\n" % milliseconds


class Subscriber:
    """One open stream: a bounded buffer of frames and a waiter. Only touched on the loop's thread."""

    __slots__ = (
        "closed",
        "deadline",
        "direct",
        "environment_id",
        "final",
        "pending",
        "replayed",
        "sending",
        "task",
        "token_id",
        "waiter",
    )

    def __init__(self, *, environment_id: int, token_id: int, deadline: float) -> None:
        self.environment_id = environment_id
        self.token_id = token_id
        self.deadline = deadline
        self.pending: deque[tuple[int, bytes]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.final: bytes | None = None  # the last frame to send before closing
        self.task: asyncio.Task[Any] | None = None
        # Ids of the releases sent on connect, so an announcement racing the connect is not sent twice.
        self.replayed: frozenset[int] = frozenset()
        # Writes ``frame`` to the socket at once when nothing is queued before it (see stream.direct_writer);
        # returns False when it cannot (socket busy, server without the fast path) and the frame is queued.
        self.direct: Callable[[bytes], bool] | None = None
        self.sending = False  # the stream's own coroutine is inside a send

    def offer(self, event_id: int, frame: bytes) -> bool:
        """Send ``frame`` (at once when possible, else queued); True when it was written to the socket now."""
        if self.closed:
            return False
        if event_id and event_id in self.replayed:
            return False
        direct = self.direct
        if direct is not None and not self.pending and not self.sending and direct(frame):
            return True
        if len(self.pending) >= MAX_PENDING_FRAMES:
            logger.info("dropping a stream that stopped reading (token %s)", self.token_id)
            self.close(None, abort=True)
            return False
        self.pending.append((event_id, frame))
        self._wake()
        return False

    def close(self, final: bytes | None, *, abort: bool = False) -> None:
        """End the stream after sending ``final``; ``abort`` cancels a writer stuck on a full socket."""
        if self.closed:
            return
        self.closed = True
        self.final = final
        self.pending.clear()
        self._wake()
        if abort and self.task is not None:
            self.task.cancel()

    async def next(self) -> tuple[int, bytes] | None:
        """The next frame, or ``None`` when the stream is to close."""
        while not self.pending and not self.closed:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        if self.closed:
            return None
        return self.pending.popleft()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Broadcaster:
    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.by_environment: dict[int, set[Subscriber]] = {}
        self.by_token: dict[int, set[Subscriber]] = {}
        self.count = 0
        self._announced: dict[int, float] = {}  # release id -> when (monotonic); for de-duplication
        # (release id, prebuilt (environment id, event data) or None to load it)
        self._deliveries: asyncio.Queue[tuple[int, tuple[int, bytes] | None]] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._started: asyncio.Event | None = None
        self._poke: asyncio.Event | None = None
        # The frames a new stream of an environment is sent on connect (its current releases), kept until a
        # release for that environment is delivered; the generation guards against storing a stale read.
        self._current: dict[int, list[tuple[int, bytes]]] = {}
        self._generation: dict[int, int] = {}
        self._current_read_at = time.monotonic()
        # Loaders are attributes so tests can drive the broadcaster without a database.
        self.load_release: Callable[[int], tuple[int, bytes] | None] = _load_release_frame
        self.load_recent: Callable[[], list[tuple[int, int]]] = _load_recent_release_ids
        self.load_inactive_tokens: Callable[[list[int]], set[int]] = _load_inactive_tokens
        self.load_current: Callable[[int], list[tuple[int, bytes]]] = _load_current_frames
        # Whether the LIVE API may answer from its caches: only while this broadcaster hears every change (the
        # PostgreSQL listener is connected; the SQLite change check reads the file the FORGE was serving).
        self.caches_trusted = False
        self._sqlite_path: str | None = None
        self._sqlite_identity: tuple[int, int] | None = None
        # On PostgreSQL: the processes tell each other their stream counts; one far above the mean sheds some.
        self.rebalancer = Rebalancer(self)

    # -- life cycle ------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.loop is not None and bool(self._tasks)

    async def start(self, *, listen: bool | None = None) -> None:
        """Start the background tasks on the running loop (idempotent)."""
        if self._started is not None:
            await self._started.wait()
            return
        self._started = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self._deliveries = asyncio.Queue()
        self._poke = asyncio.Event()
        try:
            now = time.monotonic()
            for release_id, _environment_id in await run_in_db_thread(self.load_recent):
                self._announced[release_id] = now  # already out before this process started
        except Exception:
            logger.exception("could not read the recent releases at start; the safety net will retry")
        if listen is None:
            listen = db.connections["default"].vendor == "postgresql"
        self._tasks = [
            asyncio.create_task(self._delivery_loop(), name="anvil.stream-delivery"),
            asyncio.create_task(self._heartbeat_loop(), name="anvil.stream-heartbeat"),
            asyncio.create_task(self._safety_net_loop(), name="anvil.stream-safety-net"),
        ]
        if listen:
            self._tasks.append(asyncio.create_task(self._listen_loop(), name="anvil.stream-listen"))
            if settings.ANVIL_STREAM_REBALANCE_SECONDS > 0:
                self._tasks.append(asyncio.create_task(self.rebalancer.run(), name="anvil.stream-rebalance"))
        if _sqlite_file() is not None:
            self._tasks.append(asyncio.create_task(self._change_check_loop(), name="anvil.change-check"))
        self._started.set()

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for subscribers in list(self.by_environment.values()):
            for subscriber in list(subscribers):
                subscriber.close(retry_frame(_reconnect_ms()))
        self.loop = None
        self._started = None

    # -- subscribers -----------------------------------------------------------------------------------

    def subscribe(self, *, environment_id: int, token_id: int) -> Subscriber | None:
        """A new subscriber, or ``None`` when this process is at its connection limit."""
        if self.count >= settings.ANVIL_STREAM_MAX_CONNECTIONS:
            return None
        max_age = settings.ANVIL_STREAM_MAX_AGE_SECONDS
        # Spread the reconnections of streams opened together (after a deploy) over the last tenth of the age.
        deadline = time.monotonic() + max_age * random.uniform(0.9, 1.0)
        subscriber = Subscriber(environment_id=environment_id, token_id=token_id, deadline=deadline)
        self.by_environment.setdefault(environment_id, set()).add(subscriber)
        self.by_token.setdefault(token_id, set()).add(subscriber)
        self.count += 1
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscriber.closed = True
        for index, key in ((self.by_environment, subscriber.environment_id), (self.by_token, subscriber.token_id)):
            members = index.get(key)
            if members is not None and subscriber in members:
                members.discard(subscriber)
                if not members:
                    del index[key]
        self.count -= 1

    # -- announcements ---------------------------------------------------------------------------------

    def announce_threadsafe(self, kind: str, ident: int, prebuilt: tuple[int, bytes] | None = None) -> None:
        """Called from any thread (a publish's ``on_commit``): hand the news to the loop."""
        live_caches.invalidate()  # before the loop hop: the publisher's next request must see it
        loop = self.loop
        if loop is None or loop.is_closed():
            return  # no streams in this process (the command line, a test): nothing to tell
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            loop.call_soon_threadsafe(self.announce, kind, ident, prebuilt)

    def announce(self, kind: str, ident: int, prebuilt: tuple[int, bytes] | None = None) -> None:
        """On the loop: a release to deliver (with its event data when the publisher built it), or a token
        whose streams must close."""
        if kind == RELEASE:
            if ident in self._announced:
                return
            live_caches.invalidate()
            self._announced[ident] = time.monotonic()
            if self._deliveries is not None:
                self._deliveries.put_nowait((ident, prebuilt))
        elif kind == REVOKE:
            live_caches.invalidate()
            self.close_token(ident)

    def close_token(self, token_id: int) -> None:
        for subscriber in list(self.by_token.get(token_id, ())):
            subscriber.close(REVOKED_FRAME)

    async def current_frames(self, environment_id: int) -> list[tuple[int, bytes]]:
        """``(release id, frame)`` of the environment's current releases, oldest first, read once and kept."""
        cached = self._current.get(environment_id)
        if cached is not None:
            return cached
        generation = self._generation.get(environment_id, 0)
        frames = await run_in_db_thread(self.load_current, environment_id)
        if self._generation.get(environment_id, 0) == generation:
            if len(self._current) >= MAX_CACHED_ENVIRONMENTS:
                self._current.clear()
            self._current[environment_id] = frames
        return frames

    def deliver(self, environment_id: int, release_id: int, frame: bytes) -> tuple[int, int]:
        """Give ``frame`` to every stream of the environment: (streams, of which written to the socket at once)."""
        self._generation[environment_id] = self._generation.get(environment_id, 0) + 1
        self._current.pop(environment_id, None)
        subscribers = self.by_environment.get(environment_id)
        if not subscribers:
            return 0, 0
        written = 0
        for subscriber in list(subscribers):
            written += subscriber.offer(release_id, frame)
        return len(subscribers), written

    # -- background tasks ------------------------------------------------------------------------------

    async def _delivery_loop(self) -> None:
        assert self._deliveries is not None
        while True:
            release_id, prebuilt = await self._deliveries.get()
            started = time.perf_counter()
            if prebuilt is not None and not _built_for_this_forge(prebuilt[1]):
                prebuilt = None  # published from a process with another ANVIL_PUBLIC_URL: build our own
            if prebuilt is not None:
                loaded: tuple[int, bytes] | None = (prebuilt[0], release_frame(release_id, prebuilt[1]))
            else:
                try:
                    loaded = await run_in_db_thread(self.load_release, release_id)
                except Exception:
                    logger.exception("could not load release %s; the safety net will retry", release_id)
                    self._announced.pop(release_id, None)
                    continue
            if loaded is None:  # rolled back after all, or deleted
                continue
            environment_id, frame = loaded
            loaded_at = time.perf_counter()
            reached, written = self.deliver(environment_id, release_id, frame)
            logger.info(
                "release %s handed to %d stream(s) (%d written at once): %.1f ms to %s, %.1f ms to hand out",
                release_id,
                reached,
                written,
                (loaded_at - started) * 1000,
                "frame" if prebuilt is not None else "load",
                (time.perf_counter() - loaded_at) * 1000,
            )

    async def _heartbeat_loop(self) -> None:
        interval = settings.ANVIL_STREAM_HEARTBEAT_SECONDS
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for subscribers in list(self.by_environment.values()):
                for subscriber in list(subscribers):
                    if now >= subscriber.deadline:
                        subscriber.close(retry_frame(_reconnect_ms()))
                    else:
                        subscriber.offer(0, HEARTBEAT_FRAME)

    async def _safety_net_loop(self) -> None:
        assert self._poke is not None
        interval = settings.ANVIL_RELEASE_POLL_SECONDS
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), timeout=interval)
            self._poke.clear()
            try:
                await self._check_once()
            except Exception:
                logger.exception("the stream's periodic release check failed; retrying")

    async def _check_once(self) -> None:
        if time.monotonic() - self._current_read_at > CURRENT_FRAMES_MAX_AGE:
            # Re-read now and then: a version approved after its release to a review environment changes
            # its bundle without a new release.
            self._current.clear()
            self._current_read_at = time.monotonic()
        recent = await run_in_db_thread(self.load_recent)
        for release_id, _environment_id in recent:
            if release_id not in self._announced:
                logger.info("release %s found by the periodic check", release_id)
                self.announce(RELEASE, release_id)
        horizon = time.monotonic() - 2 * LOOK_BACK.total_seconds()
        for release_id in [r for r, when in self._announced.items() if when < horizon]:
            del self._announced[release_id]
        if self.by_token:
            for token_id in await run_in_db_thread(self.load_inactive_tokens, list(self.by_token)):
                self.close_token(token_id)

    def caches_usable(self) -> bool:
        """Whether the LIVE API may answer from its caches now (see :attr:`caches_trusted`)."""
        if not self.caches_trusted:
            return False
        if self._sqlite_path is not None:  # the file moved or was replaced since the last check: not any more
            try:
                stat = os.stat(self._sqlite_path)
            except OSError:
                return False
            return (stat.st_dev, stat.st_ino) == self._sqlite_identity
        return True

    async def _change_check_loop(self) -> None:
        """SQLite: notice a commit by another connection that changes what the LIVE API serves, within
        ``ANVIL_CHANGE_CHECK_SECONDS``; and notice the file itself going away or being replaced (an outage, a
        restore), after which nothing cached and no kept connection is used."""
        assert self._poke is not None
        interval = getattr(settings, "ANVIL_CHANGE_CHECK_SECONDS", 0.02)
        path = str(_sqlite_file())
        self._sqlite_path = path
        check = DataVersion(path)
        last: tuple[Any, ...] | None = None
        try:
            while True:
                identity = _file_identity(path)
                if self._sqlite_identity is not None and identity != self._sqlite_identity:
                    logger.warning("the SQLite database file %s moved or was replaced; reconnecting", path)
                    self.caches_trusted = False
                    self._sqlite_identity = None
                    live_caches.invalidate()
                    database_moved()
                    check.reset()
                try:
                    version = await check.read()
                except Exception as exc:  # the file is gone or locked for long: the safety net still runs
                    logger.warning("SQLite change check failed (%s); retrying", exc)
                    self.caches_trusted = False
                    check.reset()
                    await asyncio.sleep(min(1.0, 10 * interval))
                    continue
                if self._sqlite_identity is None:
                    self._sqlite_identity = _file_identity(path)
                    live_caches.invalidate()
                    self.caches_trusted = self._sqlite_identity is not None
                    self._poke.set()
                elif last is not None and version != last:
                    live_caches.invalidate()
                    self._poke.set()  # the periodic check, now: new releases, revoked tokens of open streams
                last = version
                await asyncio.sleep(interval)
        finally:
            self.caches_trusted = False
            await check.close()

    async def _listen_loop(self) -> None:
        import psycopg

        backoff = 1.0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(_postgres_conninfo(), autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    await conn.execute(f"LISTEN {LOAD_CHANNEL}")
                    logger.info("listening for releases on PostgreSQL channel %s", CHANNEL)
                    backoff = 1.0
                    live_caches.invalidate()  # whatever was announced while not listening
                    self.caches_trusted = True
                    assert self._poke is not None
                    self._poke.set()  # anything published while not listening is found by a check now
                    async for notify in conn.notifies():
                        if notify.channel == LOAD_CHANNEL:
                            self.rebalancer.heard(notify.payload)
                            continue
                        parsed = parse_notify_payload(notify.payload)
                        if parsed is not None:
                            self.announce(*parsed)
            except asyncio.CancelledError:
                self.caches_trusted = False
                raise
            except Exception as exc:
                # Not hearing NOTIFY, the caches cannot be kept exact (and the database may be gone): the LIVE API
                # reads the database until the listener is back.
                self.caches_trusted = False
                live_caches.invalidate()
                logger.warning("PostgreSQL LISTEN connection lost (%s); reconnecting in %.0f s", exc, backoff)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, 30.0)


class DataVersion:
    """What the LIVE API depends on in one SQLite file, read on a connection and a thread of its own.

    ``PRAGMA data_version`` changes whenever another connection commits (cheap: no table is read); only then
    is the fingerprint read again: the newest release, the revoked tokens, the versions' reviews and the
    environments' review setting. Check-ins and page writes change ``data_version`` all the time but not the
    fingerprint, so they do not empty the caches.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._connection: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anvil.change-check")
        self._data_version: int | None = None
        self._fingerprint: tuple[Any, ...] = ()
        self._sql = _fingerprint_sql()

    def _read(self) -> tuple[Any, ...]:
        import sqlite3

        if self._connection is None:
            self._connection = sqlite3.connect(self.path, timeout=1.0, check_same_thread=False, isolation_level=None)
            self._data_version = None
        version = self._connection.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._fingerprint = tuple(self._connection.execute(self._sql).fetchone())
            self._data_version = version
        return self._fingerprint

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def read(self) -> tuple[Any, ...]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._read)

    def reset(self) -> None:
        self._executor.submit(self._close)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.shield(asyncio.get_running_loop().run_in_executor(self._executor, self._close))
        self._executor.shutdown(wait=False)


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino) if os.path.isfile(path) else None


def database_moved() -> None:
    """The database under this process is another one now: close kept connections before their next use."""
    global _db_epoch
    from anvil_forge.core.dbpool import pool

    _db_epoch += 1
    pool.drain()


def _fingerprint_sql() -> str:
    from anvil_forge.distribution.models import AccessToken, Release
    from anvil_forge.prompts.models import Environment, PromptSetVersion

    release, token = Release._meta.db_table, AccessToken._meta.db_table
    version, environment = PromptSetVersion._meta.db_table, Environment._meta.db_table
    terms = [
        ("max(id)", release),
        ("count(*)", release),
        ("count(revoked_at)", token),
        ("count(*)", token),
        ("max(expires_at)", token),
        ("count(reviewed_at)", version),
        ("max(reviewed_at)", version),
        ("count(*)", version),
        ("count(*)", environment),
        ("sum(accepts_review_versions)", environment),
    ]
    # Table names from the models' metadata, never from input.
    return "SELECT " + ", ".join(f"(SELECT {term} FROM {table})" for term, table in terms)  # noqa: S608


def _sqlite_file() -> str | None:
    """The SQLite database file of this FORGE, or ``None`` (PostgreSQL, or an in-memory test database)."""
    connection = db.connections["default"]
    if connection.vendor != "sqlite":
        return None
    name = str(connection.settings_dict["NAME"])
    return None if connection.creation.is_in_memory_db(name) else name


def _built_for_this_forge(data: bytes) -> bool:
    """Whether an event built by the publishing process names this FORGE's public URL in its bundle."""
    if b'"bundle":' not in data:
        return True  # a reference only: nothing in it depends on the URL
    expected = b'"forge":' + json.dumps(settings.ANVIL_PUBLIC_URL, ensure_ascii=False).encode("utf-8")
    return expected in data


def _reconnect_ms() -> int:
    return random.randint(500, 3000)


def _load_release_frame(release_id: int) -> tuple[int, bytes] | None:
    from anvil_forge.distribution.bundles import release_frame_data

    loaded = release_frame_data(release_id, inline_limit=settings.ANVIL_STREAM_INLINE_BUNDLE_BYTES)
    if loaded is None:
        return None
    environment_id, _, data = loaded
    return environment_id, release_frame(release_id, data)


def _load_current_frames(environment_id: int) -> list[tuple[int, bytes]]:
    from anvil_forge.distribution.bundles import release_frame_data
    from anvil_forge.distribution.selectors import current_release_ids

    frames = []
    for release_id in current_release_ids(environment_id=environment_id):
        loaded = release_frame_data(release_id, inline_limit=settings.ANVIL_STREAM_INLINE_BUNDLE_BYTES)
        if loaded is not None:
            frames.append((release_id, release_frame(release_id, loaded[2])))
    return frames


def _load_recent_release_ids() -> list[tuple[int, int]]:
    from anvil_forge.distribution.selectors import recent_release_ids

    return recent_release_ids(since=timezone.now() - LOOK_BACK)


def _load_inactive_tokens(token_ids: list[int]) -> set[int]:
    from anvil_forge.distribution.services import token_ids_inactive

    return token_ids_inactive(token_ids)


def _postgres_conninfo() -> str:
    from psycopg.conninfo import make_conninfo

    config = settings.DATABASES["default"]
    params = {
        "dbname": config.get("NAME") or None,
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
        "host": config.get("HOST") or None,
        "port": str(config["PORT"]) if config.get("PORT") else None,
    }
    for key, value in (config.get("OPTIONS") or {}).items():
        if key in {"sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "options", "target_session_attrs"}:
            params[key] = str(value)
    return make_conninfo(**{k: v for k, v in params.items() if v is not None})


# The one broadcaster of this process.
broadcaster = Broadcaster()

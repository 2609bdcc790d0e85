"""In-memory caches of the LIVE API: tokens, each environment's releases answer, and resolved bundles.

One set per FORGE process, read by :mod:`anvil_forge.distribution.live_api` on every request, so a polling
client costs no database work. They are kept exact by invalidation, never by expiry alone:

* a publish or a revocation empties them, in the publishing process right after the commit and in every
  other process when the broadcaster hears of it (PostgreSQL NOTIFY, the SQLite change check, or the
  periodic safety net): see :mod:`anvil_forge.distribution.broadcast`;
* on SQLite, any commit by any connection (another process, or a page of this one) empties them: the
  broadcaster checks ``PRAGMA data_version`` every few tens of milliseconds;
* a token's expiry is checked against its cached ``expires_at`` on every request;
* and as a safety net for changes that send no announcement on PostgreSQL (an environment that stops taking
  versions in review, a version approved after its release to such an environment, a rename), no entry is
  used longer than ``ANVIL_LIVE_CACHE_SECONDS`` (default 1 s) after it was read.

Entries are filled with the generation read *before* the database work: an invalidation that happens while
a request reads the database discards what it read.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

MAX_TOKENS = 10_000
MAX_ENVIRONMENTS = 2_000
MAX_BUNDLES = 4_096


@dataclass(frozen=True, slots=True)
class CachedToken:
    token: Any  # the AccessToken, loaded with project__organisation and environment; read only
    environment_id: int
    project_id: int
    expires_at: float | None  # epoch seconds
    last_used_at: float  # epoch seconds of the last ``last_used_at`` write
    read_at: float  # monotonic


@dataclass(frozen=True, slots=True)
class Entry:
    value: Any
    read_at: float  # monotonic


class LiveCaches:
    """Three dictionaries and a generation counter; safe to use from the loop and from database threads."""

    def __init__(self, *, max_age: float = 1.0) -> None:
        self.max_age = max_age
        self.generation = 0
        self.invalidations = 0
        self.tokens: dict[str, CachedToken] = {}
        self.releases: dict[int, Entry] = {}
        self.bundles: dict[tuple[int, int, str, str | None], Entry] = {}
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        """Forget everything (a publish, a revocation, a change seen in the database)."""
        with self._lock:
            self.generation += 1
            self.invalidations += 1
            self.tokens = {}
            self.releases = {}
            self.bundles = {}

    # -- reads (no lock: a dictionary read is atomic, and a swapped dictionary is simply a miss) ---------

    def token(self, digest: str) -> CachedToken | None:
        entry = self.tokens.get(digest)
        if entry is None or time.monotonic() - entry.read_at >= self.max_age:
            return None
        return entry

    def releases_body(self, environment_id: int) -> bytes | None:
        entry = self.releases.get(environment_id)
        if entry is None or time.monotonic() - entry.read_at >= self.max_age:
            return None
        return entry.value

    def bundle(self, key: tuple[int, int, str, str | None]) -> Any:
        entry = self.bundles.get(key)
        if entry is None or time.monotonic() - entry.read_at >= self.max_age:
            return None
        return entry.value

    # -- fills: ``generation`` is what :attr:`generation` was before the database was read ---------------

    def put_token(self, digest: str, entry: CachedToken, generation: int) -> None:
        with self._lock:
            if generation != self.generation:
                return
            if len(self.tokens) >= MAX_TOKENS:
                self.tokens = {}
            self.tokens[digest] = entry

    def put_releases(self, environment_id: int, body: bytes, generation: int, read_at: float) -> None:
        with self._lock:
            if generation != self.generation:
                return
            if len(self.releases) >= MAX_ENVIRONMENTS:
                self.releases = {}
            self.releases[environment_id] = Entry(body, read_at)

    def put_bundle(self, key: tuple[int, int, str, str | None], value: Any, generation: int, read_at: float) -> None:
        with self._lock:
            if generation != self.generation:
                return
            if len(self.bundles) >= MAX_BUNDLES:
                self.bundles = {}
            self.bundles[key] = Entry(value, read_at)


class SingleFlight:
    """On the event loop: concurrent cache misses for one key share the first one's database read.

    When a cached entry expires under load (a thousand check-ins a second with one token), every request in
    flight missed at once and each read the database in the few database threads; now one reads and the others
    wait for its answer (or its exception). The read runs as its own task, so a waiting request that is cancelled
    (its client went away) cancels neither the read nor the others. Keys must change when an answer read before
    them must not be shared (the caches' ``generation`` after an invalidation).
    """

    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Future[Any]] = {}

    async def run(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        flight = self._flights.get(key)
        if flight is None or flight.get_loop() is not asyncio.get_running_loop():  # (a loop that ended mid-read)
            flight = asyncio.ensure_future(read())
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._landed(key, done))
        return await asyncio.shield(flight)

    def _landed(self, key: Hashable, flight: asyncio.Future[Any]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            flight.exception()  # retrieved: a failure every waiter already got is not logged again as unretrieved

    def __len__(self) -> int:
        return len(self._flights)


def _max_age() -> float:
    from django.conf import settings

    return float(getattr(settings, "ANVIL_LIVE_CACHE_SECONDS", 1.0))


# The caches of this process.
live_caches = LiveCaches(max_age=_max_age())

"""The pool behind :mod:`anvil_forge.core.backends`: idle raw connections shared by the threads of a process.

Raw DB-API connections only (sqlite3, psycopg), never Django's wrappers: each thread keeps its own wrapper,
as Django expects, and only the open connection under it moves from a finished request's thread to the next.
Connections move between threads one at a time (a connection is in the pool or in one wrapper), which both
drivers allow (Django opens SQLite with ``check_same_thread=False``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

MAX_IDLE_SECONDS = 60.0


class ConnectionPool:
    def __init__(self, *, size: int) -> None:
        self.size = size
        self._idle: dict[Hashable, list[tuple[Any, float]]] = {}
        self._lock = threading.Lock()
        self.opened = 0
        self.reused = 0
        # Raised by :meth:`drain`: a connection taken or opened before is closed, not kept, when it is given back.
        self.generation = 0

    def take(self, key: Hashable) -> Any | None:
        """An idle connection for ``key`` (the database it is connected to), or ``None``."""
        stale = []
        found = None
        now = time.monotonic()
        with self._lock:
            idle = self._idle.get(key)
            while idle:
                connection, since = idle.pop()
                if now - since > MAX_IDLE_SECONDS:
                    stale.append(connection)
                    continue
                found = connection
                self.reused += 1
                break
        for connection in stale:
            _close(connection)
        return found

    def give(self, key: Hashable, connection: Any, reusable: Callable[[Any], bool]) -> None:
        """Keep ``connection`` for the next request when it is ``reusable`` and there is room; else close it."""
        if reusable(connection):
            with self._lock:
                idle = self._idle.setdefault(key, [])
                if len(idle) < self.size:
                    idle.append((connection, time.monotonic()))
                    return
        _close(connection)

    def drain(self, key: Hashable | None = None) -> None:
        """Close the idle connections (of ``key``, or all): before a test database is dropped, at exit."""
        with self._lock:
            self.generation += 1
            keys = list(self._idle) if key is None else [key]
            closing = [connection for k in keys for connection, _ in self._idle.pop(k, [])]
        for connection in closing:
            _close(connection)

    def idle_count(self) -> int:
        with self._lock:
            return sum(len(idle) for idle in self._idle.values())


def _close(connection: Any) -> None:
    with contextlib.suppress(Exception):
        connection.close()


def _size() -> int:
    import os

    try:
        return max(0, int(os.environ.get("ANVIL_DB_POOL_SIZE", "8")))
    except ValueError:
        return 8


# The pool of this process (both backends; keyed by vendor and database).
pool = ConnectionPool(size=_size())


class PooledWrapperMixin:
    """For a Django ``DatabaseWrapper``: take new connections from :data:`pool`, give closed ones back."""

    connection: Any
    settings_dict: dict[str, Any]
    vendor: str
    alias: str

    def _pool_key(self) -> Hashable:
        settings = self.settings_dict
        return (self.vendor, settings.get("NAME"), settings.get("HOST"), settings.get("PORT"), settings.get("USER"))

    def _pool_reusable(self, connection: Any) -> bool:
        raise NotImplementedError

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        self._pool_generation = pool.generation
        # The key of the database as it is now: a connection goes back under the key it was opened with.
        self._opened_key = key = self._pool_key()
        if pool.size:
            connection = pool.take(key)
            if connection is not None:
                return connection
        pool.opened += 1
        return super().get_new_connection(conn_params)  # type: ignore[misc]

    def _close(self) -> None:
        connection = self.connection
        if connection is None:
            return
        if (
            not pool.size
            or getattr(self, "in_atomic_block", False)
            or getattr(self, "errors_occurred", False)
            or getattr(self, "_pool_generation", None) != pool.generation
        ):
            super()._close()  # type: ignore[misc]
            return
        pool.give(getattr(self, "_opened_key", None) or self._pool_key(), connection, self._pool_reusable)

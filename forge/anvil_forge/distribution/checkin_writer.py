"""The check-in writer: one thread per FORGE process that records check-ins in batches.

A check-in request only hands its parsed report to :data:`checkin_writer` (a dictionary write under a lock)
and is answered at once. The writer thread (``anvil.checkin-writer``) wakes when something arrives, waits
:data:`BATCH_WINDOW_SECONDS` for more, and records everything pending in one transaction on its own kept
database connection (:func:`~anvil_forge.distribution.services.instance_checkins_record`: one upsert for the
periodic check-ins, the full path for the rest). So concurrent check-ins never contend for SQLite's write lock
(one writer per process, one transaction per batch), no request thread opens a database connection, and what
the FORGE shows lags what the instances said by the window plus the time of one batch: well under a second.

Pending check-ins are kept per process (environment, instance id, process id): a process that checks in twice
before the batch is written counts once, with its newest report (and the ``applied`` versions and the
``signals`` of both).
At most :data:`MAX_PENDING` processes wait; past that, :meth:`CheckinWriter.submit` refuses and the endpoint
answers 503 with a ``Retry-After`` (the client checks in again later), so memory stays bounded.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime

from django import db

from anvil_forge.distribution.checkin import MAX_APPLIED_PER_SET, CheckIn, merge_signals
from anvil_forge.distribution.models import AccessToken

logger = logging.getLogger(__name__)

BATCH_WINDOW_SECONDS = 0.05
MAX_PENDING = 50_000
MAX_BATCH = 5_000  # check-ins per transaction; more wait for the next batch
RETRY_SECONDS = 1.0  # after a failed batch (database down): wait, then write it again

Key = tuple[int, str, int]


@dataclass(slots=True)
class _Pending:
    token: AccessToken
    checkin: CheckIn
    received_at: datetime


def _merged(older: CheckIn, newer: CheckIn) -> CheckIn:
    """``newer`` with the ``applied`` versions of ``older`` that it does not report (newest kept), and the
    ``signals`` of both summed (each check-in counts what happened since the one before)."""
    if older.signals:
        newer = replace(newer, signals=merge_signals(older.signals, newer.signals))
    if not older.applied:
        return newer
    applied = {slug: list(numbers) for slug, numbers in older.applied.items()}
    for slug, numbers in newer.applied.items():
        applied[slug] = [n for n in applied.get(slug, []) if n not in numbers] + list(numbers)
    bounded = {slug: tuple(numbers[-MAX_APPLIED_PER_SET:]) for slug, numbers in applied.items()}
    return replace(newer, applied=bounded)


class CheckinWriter:
    """Pending check-ins and the thread that writes them. Thread-safe; the thread starts on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._written = threading.Condition(self._lock)
        self._pending: dict[Key, _Pending] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._submitted = 0  # check-ins handed over so far
        self._done = 0  # of which recorded (or given up on)
        self.batches = 0
        self.failures = 0

    # -- requests' side --------------------------------------------------------------------------------

    def submit(self, *, token: AccessToken, checkin: CheckIn, received_at: datetime) -> bool:
        """Hand a check-in over to be written; ``False`` when too many are waiting (answer 503)."""
        key = (token.environment_id, checkin.instance_id, checkin.process_id)
        with self._lock:
            older = self._pending.get(key)
            if older is None and len(self._pending) >= MAX_PENDING:
                return False
            if older is not None:
                checkin = _merged(older.checkin, checkin)
                self._done += 1  # the older one is written as part of this one
            self._pending[key] = _Pending(token, checkin, received_at)
            self._submitted += 1
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="anvil.checkin-writer", daemon=True)
                self._thread.start()
            self._arrived.notify()
        return True

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every check-in submitted before this call is recorded; ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self._submitted
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return self._done >= target
                self._arrived.notify()
                self._written.wait(left)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is pending and end the thread (the server's shutdown)."""
        self.flush(timeout)
        with self._lock:
            self._stopping = True
            self._arrived.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # -- the writer thread -----------------------------------------------------------------------------

    def _take(self) -> list[_Pending] | None:
        with self._lock:
            while not self._pending and not self._stopping:
                self._arrived.wait()
            if not self._pending:
                return None
        time.sleep(BATCH_WINDOW_SECONDS)  # let the check-ins arriving together join the batch
        with self._lock:
            if len(self._pending) <= MAX_BATCH:
                batch, self._pending = list(self._pending.values()), {}
            else:
                keys = list(self._pending)[:MAX_BATCH]
                batch = [self._pending.pop(key) for key in keys]
        return batch

    def _run(self) -> None:
        try:
            while True:
                batch = self._take()
                if batch is None:
                    return
                self._write(batch)
        finally:
            db.connections.close_all()  # this thread's connection: closed by the thread that opened it

    def _write(self, batch: list[_Pending]) -> None:
        from anvil_forge.distribution.services import instance_checkins_record

        items = [(item.token, item.checkin, item.received_at) for item in batch]
        for attempt in range(3):
            try:
                instance_checkins_record(checkins=items)
                break
            except Exception:
                self.failures += 1
                db.connection.close()  # a broken connection is not reused
                if attempt == 2:
                    logger.exception("could not record %d check-in(s); they are dropped", len(items))
                else:
                    logger.warning("could not record %d check-in(s); retrying", len(items), exc_info=True)
                    time.sleep(RETRY_SECONDS)
        with self._lock:
            self.batches += 1
            self._done += len(batch)
            self._written.notify_all()


# The one writer of this process.
checkin_writer = CheckinWriter()

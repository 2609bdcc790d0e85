"""The scheduler: one thread per FORGE process that publishes scheduled releases when they are due.

Started and stopped with the server (the ASGI lifespan in ``asgi.py``), like the broadcaster. The thread
(``anvil.scheduler``) calls :func:`~anvil_forge.distribution.scheduling.scheduled_releases_fire` at once (a
FORGE that was down at a release's time publishes it now, late, and says so) and then every
``ANVIL_SCHEDULER_SECONDS`` (default 1; ``0`` turns the scheduler off in this process). Several processes
may run it on one PostgreSQL database: each due row is claimed under a row lock, so it is published once.
Errors are logged, never raised; the thread keeps its own database connection and closes it when it ends.
"""

from __future__ import annotations

import logging
import os
import threading

from django import db

logger = logging.getLogger(__name__)


def interval_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("ANVIL_SCHEDULER_SECONDS", "1")))
    except ValueError:
        return 1.0


class Scheduler:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0
        self.failures = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, interval: float | None = None) -> None:
        """Start the thread (idempotent); no thread when the interval is 0."""
        interval = interval_seconds() if interval is None else interval
        if interval <= 0 or self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(interval,), name="anvil.scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def tick(self) -> int:
        """Publish what is due now; the number of scheduled releases handled (published or failed)."""
        from anvil_forge.distribution.scheduling import scheduled_releases_fire

        try:
            return len(scheduled_releases_fire())
        except Exception:
            self.failures += 1
            db.connection.close()  # a broken connection is not reused
            logger.exception("the scheduler could not publish the due releases; it tries again")
            return 0
        finally:
            self.ticks += 1

    def _run(self, interval: float) -> None:
        try:
            while True:
                self.tick()
                if self._stop.wait(interval):
                    return
        finally:
            db.connections.close_all()  # this thread's connection: closed by the thread that opened it


# The one scheduler of this process.
scheduler = Scheduler()

"""The drainer: one daemon thread per FORGE process (``anvil.webhooks``) that sends the queued deliveries (and
first checks the releases whose acknowledgements were just recorded: ``webhooks.acknowledged``).

It wakes after each commit that queued something in this process (``wake``) and otherwise every
``ANVIL_WEBHOOK_POLL_SECONDS`` (deliveries queued by another process, retries that came due). Several
processes may drain one PostgreSQL database at once: claims skip the rows another has locked
(``services.deliveries_claim``). Errors are logged, never raised; started and stopped with the server.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from django.conf import settings
from django.db import close_old_connections, connections

logger = logging.getLogger("anvil_forge.webhooks")

_wakeup = threading.Event()
_stop = threading.Event()
_thread: threading.Thread | None = None
_lock = threading.Lock()


def wake() -> None:
    _wakeup.set()


def start() -> None:
    global _thread
    with _lock:
        if _thread is not None and _thread.is_alive():
            return
        _stop.clear()
        _thread = threading.Thread(target=_run, name="anvil.webhooks", daemon=True)
        _thread.start()


def stop(timeout: float = 5.0) -> None:
    global _thread
    with _lock:
        thread, _thread = _thread, None
    if thread is None:
        return
    _stop.set()
    _wakeup.set()
    thread.join(timeout)


def _run() -> None:
    from anvil_forge.webhooks.acknowledged import check_pending, next_check_in
    from anvil_forge.webhooks.services import deliveries_send_due

    while not _stop.is_set():
        _wakeup.clear()
        try:
            close_old_connections()
            check_pending()  # releases every instance may now run (``release.acknowledged``): queues deliveries
            deliveries_send_due()
        except Exception:  # a lost database, a bug: logged, and tried again at the next wake-up
            logger.exception("webhooks: sending the queued deliveries failed")
            with contextlib.suppress(Exception):
                connections["default"].close()
        wait = settings.ANVIL_WEBHOOK_POLL_SECONDS
        put_off = next_check_in()  # a release whose check waits for its interval: no longer than that
        _wakeup.wait(wait if put_off is None else min(wait, put_off))
    connections.close_all()

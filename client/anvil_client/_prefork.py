"""Pre-fork servers: where the sync thread may run, and how a forked worker starts its own.

gunicorn, Celery's prefork pool (billiard), ``multiprocessing`` and mod_wsgi fork with Python's
``os.fork()`` (or before Python loads the application), so the hooks of ``os.register_at_fork`` run in
every child: there a client only has to restart its sync in each child, which it does.

uWSGI forks its workers in C. Without ``--lazy-apps`` it loads the application in the master
(``uwsgi.worker_id() == 0``) and forks every worker from it, at start-up and whenever it replaces one;
Python's fork hooks do not run (unless ``--py-call-uwsgi-fork-hooks``). A Python thread alive in the master
at that moment may hold the GIL, and the new worker then hangs for ever in uWSGI's post-fork fix-up
(unbit/uwsgi issues 1149 and 1369). So in a process uWSGI may fork, a client runs no thread and keeps no
socket open: it serves what it loaded, and each worker starts its own sync, from uWSGI's ``post_fork_hook``
(chained with the host's own) or, failing that, on its first use.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

_uwsgi_hooks: list[Callable[[], None]] = []


def forked_without_python_hooks() -> bool:
    """Whether this process may still be forked by uWSGI in C: its master, or the process loading the app."""
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None:
        return False
    try:
        if uwsgi.worker_id() > 0:
            return False
        mule_id = getattr(uwsgi, "mule_id", None)
        if mule_id is not None and mule_id() > 0:
            return False
        spooler = getattr(uwsgi, "i_am_the_spooler", None)
        return not (spooler is not None and spooler())
    except Exception:  # an embedding that merely looks like uWSGI
        return False


def threads_cannot_run() -> str | None:
    """Why background threads will not run in this process, with the fix; None when they will.

    uWSGI before 2.0.27 runs Python threads only with ``--enable-threads`` (or ``--threads N``); since
    2.0.27 they are always on. ``uwsgi.has_threads`` is the truth in every version.
    """
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None or getattr(uwsgi, "has_threads", 1):
        return None
    return (
        "uWSGI runs this process without Python threads (uwsgi.has_threads is 0), so its sync thread cannot run "
        "and it will keep serving the prompts it has without taking new versions; start uWSGI with "
        "--enable-threads (uWSGI 2.0.27 and later always enable them)"
    )


def after_uwsgi_fork(callback: Callable[[], None]) -> bool:
    """Call ``callback`` in each worker uWSGI forks from now on. Returns False outside uWSGI.

    Chains ``uwsgi.post_fork_hook`` with the host's own hook (through ``uwsgidecorators.postfork`` when the
    host uses that module). A host that later replaces the hook without chaining loses only the early
    start: the worker's first use still starts its sync.
    """
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None:
        return False
    if _uwsgi_hooks:
        _uwsgi_hooks.append(callback)
        return True
    _uwsgi_hooks.append(callback)
    decorators = sys.modules.get("uwsgidecorators")
    if decorators is not None and hasattr(decorators, "postfork"):
        decorators.postfork(_run_uwsgi_hooks)
        return True
    previous = getattr(uwsgi, "post_fork_hook", None)

    def post_fork_hook() -> None:
        _run_uwsgi_hooks()
        if callable(previous):
            previous()

    uwsgi.post_fork_hook = post_fork_hook
    return True


def _run_uwsgi_hooks() -> None:
    for callback in list(_uwsgi_hooks):
        try:
            callback()
        except Exception:  # never break a worker's start
            import logging

            logging.getLogger("anvil_client").exception("anvil: starting sync after uWSGI's fork failed")

"""Live pages: the FORGE pushes "this project changed" to its open pages as Server-Sent Events.

``GET /o/<org>/p/<project>/live-events`` is a raw ASGI endpoint beside Django (like the LIVE stream, and for
the same reason: a Django async view would pin an OS thread per open page). It authenticates the browser's
Django session cookie, checks that the user is a member of the project's organisation (404 otherwise, as the
pages do), then sends:

* ``event: ready`` once it is listening (the page refreshes its live regions then, so nothing that happened
  between rendering the page and opening the stream is missed, after a reconnection too);
* ``event: changed`` with ``{"kinds": [...]}`` whenever something of the project changed: any audited change
  (acknowledgements, review decisions, submissions, publishes, rollbacks, edits: see ``audit_record``) and
  instance state reported by check-ins (new processes, versions, mode, pins). Bursts are coalesced;
* a comment every ``HEARTBEAT_SECONDS``, and the end of the stream after ``MAX_AGE_SECONDS`` with a ``retry``
  hint, so the browser reconnects and the session is checked again.

The page (``web/static/anvil/live-pages.js``) answers ``changed`` by asking htmx to refresh its live regions;
the events carry no data of their own, so nothing leaks that the page's own request would not show. When the
stream cannot be opened (signed out, proxy without streaming), the page falls back to slow polling.

How the news travels: :func:`project_changed` is called inside the transaction of the change. On PostgreSQL
it issues ``pg_notify`` on :data:`CHANNEL` (delivered to every FORGE process when, and if, the transaction
commits); each process with open pages LISTENs on its own connection. On SQLite (one FORGE process) it
hands the news to this process's loop on commit. A change made by another process on SQLite (the
``anvil-forge`` command) is not pushed; the page shows it on its next refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from http.cookies import SimpleCookie
from importlib import import_module
from typing import Any

from django.conf import settings
from django.db import transaction

from anvil_forge.distribution.broadcast import run_in_db_thread

logger = logging.getLogger(__name__)

PATH = "/o/{org}/p/{project}/live-events"
CHANNEL = "anvil_pages"
HEARTBEAT_SECONDS = 15.0
MAX_AGE_SECONDS = 300.0
MAX_PAGES = 2000  # open page streams per process
RETRY_MS = 1000
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]

Scope = dict[str, Any]


# -- the news -------------------------------------------------------------------------------------------------


def project_changed(project_id: int | None, kind: str) -> None:
    """Tell the open pages of project ``project_id`` that something (``kind``) changed, once the surrounding
    transaction commits. Never raises: a page not refreshed is not worth failing a change for."""
    if project_id is None:
        return
    try:
        connection = transaction.get_connection()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, f"{int(project_id)}:{kind}"])
        else:
            transaction.on_commit(lambda: hub.notify_threadsafe(int(project_id), kind))
    except Exception:  # pragma: no cover - defensive: the change itself must go on
        logger.exception("could not announce a change of project %s to its open pages", project_id)


def parse_payload(payload: str) -> tuple[int, str] | None:
    project, _, kind = payload.partition(":")
    if not project.isdigit() or not kind:
        return None
    return int(project), kind[:40]


class PageSubscriber:
    """One open page: the kinds of change not yet sent, and a waiter. Only touched on the loop's thread."""

    __slots__ = ("closed", "event", "kinds", "project_id")

    def __init__(self, project_id: int) -> None:
        self.project_id = project_id
        self.kinds: set[str] = set()
        self.event = asyncio.Event()
        self.closed = False

    def offer(self, kind: str) -> None:
        if len(self.kinds) < 16:
            self.kinds.add(kind)
        self.event.set()

    def close(self) -> None:
        self.closed = True
        self.event.set()


class PageHub:
    """The open pages of this process, by project; on PostgreSQL, the LISTEN task that feeds them."""

    def __init__(self) -> None:
        self.by_project: dict[int, set[PageSubscriber]] = {}
        self.count = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listening: asyncio.Event | None = None

    async def start(self) -> None:
        """On the server's loop, before the first page subscribes; waits (bounded) until LISTEN is in place."""
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            self.loop = loop
            self._listener = None
            self._listening = asyncio.Event()
        if _database_vendor() != "postgresql":
            return
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen_loop(), name="anvil.page-listen")
        assert self._listening is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout=5.0)

    async def stop(self) -> None:
        task, self._listener = self._listener, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for subscribers in list(self.by_project.values()):
            for subscriber in list(subscribers):
                subscriber.close()

    def subscribe(self, project_id: int) -> PageSubscriber | None:
        if self.count >= MAX_PAGES:
            return None
        subscriber = PageSubscriber(project_id)
        self.by_project.setdefault(project_id, set()).add(subscriber)
        self.count += 1
        return subscriber

    def unsubscribe(self, subscriber: PageSubscriber) -> None:
        members = self.by_project.get(subscriber.project_id)
        if members is not None and subscriber in members:
            members.discard(subscriber)
            self.count -= 1
            if not members:
                del self.by_project[subscriber.project_id]

    def notify(self, project_id: int, kind: str) -> None:
        for subscriber in list(self.by_project.get(project_id, ())):
            subscriber.offer(kind)

    def notify_threadsafe(self, project_id: int, kind: str) -> None:
        """From any thread (a commit in a Django request thread): hand the news to the loop."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return  # no open page in this process
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            loop.call_soon_threadsafe(self.notify, project_id, kind)

    async def _listen_loop(self) -> None:
        import psycopg

        from anvil_forge.distribution.broadcast import _postgres_conninfo

        backoff = 1.0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(_postgres_conninfo(), autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    backoff = 1.0
                    assert self._listening is not None
                    self._listening.set()
                    # Anything that changed while not listening: every open page refreshes once.
                    for project_id in list(self.by_project):
                        self.notify(project_id, "reconnected")
                    async for notify in conn.notifies():
                        parsed = parse_payload(notify.payload)
                        if parsed is not None:
                            self.notify(*parsed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._listening is not None:
                    self._listening.clear()
                logger.warning("page events: LISTEN connection lost (%s); reconnecting in %.0f s", exc, backoff)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, 30.0)


def _database_vendor() -> str:
    from django.db import connections

    return connections["default"].vendor


# -- the endpoint -----------------------------------------------------------------------------------------------


def _session_key(scope: Scope) -> str | None:
    raw = b"; ".join(value for key, value in scope.get("headers", ()) if key == b"cookie")
    if not raw:
        return None
    cookie: SimpleCookie = SimpleCookie()
    with contextlib.suppress(Exception):
        cookie.load(raw.decode("latin-1"))
    morsel = cookie.get(settings.SESSION_COOKIE_NAME)
    return morsel.value if morsel is not None and morsel.value else None


class _SessionRequest:
    """Just enough of a request for ``django.contrib.auth.get_user``: the session."""

    def __init__(self, session: Any) -> None:
        self.session = session


def authorise(session_key: str | None, org: str, project: str) -> tuple[int, int] | bool | None:
    """``(user id, project id)`` when the session's user is a member of the project's organisation; ``None``
    when signed out; ``False`` when signed in but the project is not theirs (or does not exist)."""
    from django.contrib.auth import get_user

    from anvil_forge.core.exceptions import ApplicationError
    from anvil_forge.prompts import selectors

    if not session_key:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = get_user(_SessionRequest(store))  # type: ignore[arg-type]
    if not user.is_authenticated:
        return None
    try:
        found = selectors.project_get(actor=user, organisation_slug=org, project_slug=project)
    except ApplicationError:  # NotFound, PermissionDenied: the same answer as the pages give
        return False
    return user.pk, found.pk


async def _respond(send: Any, status: int, text: str) -> None:
    body = json.dumps({"error": text}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class PageEvents:
    """The ASGI application of the live-events route."""

    def __init__(self) -> None:
        self.heartbeat = HEARTBEAT_SECONDS
        self.max_age = MAX_AGE_SECONDS

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "GET":
            await _respond(send, 405, "method not allowed")
            return
        params = scope.get("path_params") or {}
        try:
            allowed = await run_in_db_thread(
                authorise, _session_key(scope), str(params.get("org", "")), str(params.get("project", ""))
            )
        except Exception:
            logger.exception("page events: the session check failed")
            await _respond(send, 503, "the FORGE cannot reach its database")
            return
        if allowed is None:
            await _respond(send, 401, "signed out: sign in again to see changes as they happen")
            return
        if allowed is False:
            await _respond(send, 404, "no such project")
            return
        _, project_id = allowed  # type: ignore[misc]
        await hub.start()
        subscriber = hub.subscribe(project_id)
        if subscriber is None:
            await _respond(send, 503, "this FORGE process has too many open pages")
            return
        watcher = asyncio.create_task(_watch_disconnect(receive, subscriber))
        try:
            await self._serve(send, subscriber)
        finally:
            watcher.cancel()
            hub.unsubscribe(subscriber)

    async def _serve(self, send: Any, subscriber: PageSubscriber) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_age * random.uniform(0.9, 1.0)
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        ready = b"retry: %d\n\nevent: ready\ndata: {}\n\n" % RETRY_MS
        await send({"type": "http.response.body", "body": ready, "more_body": True})
        while not subscriber.closed:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(subscriber.event.wait(), timeout=min(self.heartbeat, left))
            except TimeoutError:
                await send({"type": "http.response.body", "body": b": heartbeat\n\n", "more_body": True})
                continue
            subscriber.event.clear()
            if subscriber.closed:
                break
            kinds, subscriber.kinds = sorted(subscriber.kinds), set()
            frame = b"event: changed\ndata: %s\n\n" % json.dumps({"kinds": kinds}).encode()
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _watch_disconnect(receive: Any, subscriber: PageSubscriber) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            subscriber.close()
            return


hub = PageHub()
page_events = PageEvents()

"""``GET /api/v1/live/stream``: the Server-Sent Events stream of a LIVE instance, as a raw ASGI endpoint.

Not a Django view: a Django async view pins an OS thread per open stream, while this endpoint costs a
coroutine, one small task (watching for the disconnect) and a :class:`~.broadcast.Subscriber` per idle
connection. It does its own token check (in the stream's database threads) and answers errors with the
same JSON bodies as the Django API. See docs/protocol.md, "Stream".
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import random
import signal
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from django.conf import settings

from anvil_forge.distribution.broadcast import (
    Subscriber,
    broadcaster,
    retry_frame,
    run_in_db_thread,
)
from anvil_forge.distribution.checkin_writer import checkin_writer
from anvil_forge.distribution.models import AccessToken, TokenKind
from anvil_forge.distribution.rollouts import frames_for_instance, pusher
from anvil_forge.distribution.rollouts import overlay as rollout_overlay
from anvil_forge.distribution.tokens import bearer_token, failure_limiter, loggable_prefix

logger = logging.getLogger(__name__)

PATH = "/api/v1/live/stream"
CONNECT_RETRY_MS = 2000
# The retry hint of a stream the FORGE ends (maximum age, shedding, shutdown), drawn per stream.
RECONNECT_MS_MIN = 500
RECONNECT_MS_MAX = 3000
# Maximum-age closes are drawn per stream over the last 30 % of the age: streams opened together (after a
# deploy) end spread out, so their clients do not come back together.
MAX_AGE_SPREAD = 0.3
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]

Scope = dict[str, Any]
DATABASE_DOWN = {"error": "the FORGE cannot reach its database"}


def _authenticate(raw: str | None) -> AccessToken | None:
    from anvil_forge.distribution.services import token_authenticate

    return token_authenticate(raw, kind=TokenKind.LIVE)


async def _respond_json(send: Any, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _last_event_id(scope: Scope) -> int:
    value = (_header(scope, b"last-event-id") or "").strip()
    return int(value) if value.isdigit() and len(value) < 19 else 0


class LiveStream:
    """The ASGI application of the stream route."""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET",):
            await _respond_json(send, 405, {"error": "method not allowed"}, [(b"allow", b"GET")])
            return
        address = (scope.get("client") or ("", 0))[0]
        wait = failure_limiter.retry_after(address)
        if wait:
            await _respond_json(
                send, 429, {"error": "too many failed attempts; try again later"}, [(b"retry-after", b"%d" % wait)]
            )
            return
        if not broadcaster.running:
            await broadcaster.start()
        if not pusher.running:
            await pusher.start()
        raw = bearer_token(_header(scope, b"authorization"))
        try:
            token = await run_in_db_thread(_authenticate, raw)
        except Exception:
            logger.exception("stream: token check failed")
            await _respond_json(send, 503, DATABASE_DOWN, [(b"retry-after", b"5")])
            return
        if token is None:
            failure_limiter.record_failure(address)
            logger.warning("refused token %s from %s on %s", loggable_prefix(raw or ""), address, PATH)
            await _respond_json(send, 401, {"error": "invalid token"}, [(b"www-authenticate", b'Bearer realm="anvil"')])
            return
        if draining.is_set():
            await _respond_json(
                send,
                503,
                {"error": "this FORGE process is shutting down"},
                [(b"retry-after", b"%d" % random.randint(1, 5))],
            )
            return
        subscriber = broadcaster.subscribe(environment_id=token.environment_id, token_id=token.pk)
        if subscriber is None:
            retry = str(random.randint(5, 30)).encode()
            await _respond_json(
                send, 503, {"error": "this FORGE process has too many open streams"}, [(b"retry-after", retry)]
            )
            return
        try:
            await self._serve(scope, receive, send, subscriber)
        finally:
            broadcaster.unsubscribe(subscriber)

    async def _serve(self, scope: Scope, receive: Any, send: Any, subscriber: Subscriber) -> None:
        subscriber.task = asyncio.current_task()
        watcher = asyncio.create_task(_watch_disconnect(receive, subscriber))
        # The maximum age: a timer of this stream's own at a jittered deadline, not the heartbeat's tick, so
        # streams opened together (after a deploy) close spread out whatever the heartbeat interval.
        expiry = asyncio.get_running_loop().call_at(_expiry_deadline(), _expire, subscriber)
        subscriber.deadline = float("inf")  # the heartbeat loop leaves it to the timer
        try:
            try:
                after = _last_event_id(scope)
                current = await broadcaster.current_frames(subscriber.environment_id)
                replay = [(release_id, frame) for release_id, frame in current if release_id > after]
                # A canary rollout that chose this instance (X-Anvil-Instance): its release event, after the rest.
                instance = (_header(scope, b"x-anvil-instance") or "")[:64] or None
                canaries = await rollout_overlay(subscriber.environment_id) if instance else ()
                pusher.opened(subscriber, instance, [(c.set_slug, c.version) for c in canaries if instance in c.chosen])
            except Exception:
                logger.exception("stream: could not read the current releases")
                await _respond_json(send, 503, DATABASE_DOWN, [(b"retry-after", b"5")])
                return
            await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
            subscriber.replayed = frozenset(release_id for release_id, _ in replay)
            body = retry_frame(CONNECT_RETRY_MS) + b"".join(frame for _, frame in replay)
            body += b"".join(frames_for_instance(canaries, instance))
            await send({"type": "http.response.body", "body": body, "more_body": True})
            subscriber.direct = direct_writer(send)
            while True:
                item = await subscriber.next()
                if item is None:
                    break
                event_id, frame = item
                if event_id and event_id in subscriber.replayed:
                    continue  # announced while the replay was read: already sent
                subscriber.sending = True
                try:
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
                finally:
                    subscriber.sending = False
            subscriber.direct = None
            await send({"type": "http.response.body", "body": subscriber.final or b"", "more_body": False})
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if subscriber.closed and task is not None and task.uncancel() == 0:
                return  # dropped as a slow reader: the server closes the connection
            raise
        finally:
            pusher.closed(subscriber)
            expiry.cancel()
            watcher.cancel()


class StreamFirst:
    """The FORGE's outermost ASGI application: the stream path goes straight to :class:`LiveStream`.

    Starlette's middleware wraps ``send`` in closures; routing the stream before it keeps uvicorn's own
    ``send`` (and with it the direct writes of :func:`direct_writer`). Everything else, lifespan included,
    goes to ``app``.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") == PATH:
            await live_stream(scope, receive, send)
            return
        await self.app(scope, receive, send)


def direct_writer(send: Any) -> Callable[[bytes], bool] | None:
    """A synchronous writer of body chunks for uvicorn's httptools server, or ``None`` elsewhere.

    Fanning a release out to thousands of streams through each stream's coroutine costs a task wake-up
    and an ``await send`` per stream; writing the chunk to the transport from the broadcaster's loop is a
    plain function call. Only used while the response is a chunked body in progress and the socket is
    accepting writes; otherwise the frame takes the ordinary ASGI path. Anything unexpected about the
    server's objects turns the fast path off.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    flow = getattr(cycle, "flow", None)
    if (
        cycle is None
        or transport is None
        or flow is None
        or getattr(cycle, "chunked_encoding", None) is not True
        or not hasattr(cycle, "disconnected")
        or not hasattr(cycle, "response_complete")
        or not hasattr(flow, "write_paused")
    ):
        return None

    def write(frame: bytes) -> bool:
        if cycle.disconnected or cycle.response_complete or flow.write_paused or transport.is_closing():
            return False
        transport.write(b"%x\r\n%b\r\n" % (len(frame), frame))
        return True

    return write


async def _watch_disconnect(receive: Any, subscriber: Subscriber) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            subscriber.close(None)
            return


def _expiry_deadline() -> float:
    """When a stream opened now closes for its maximum age (loop time): spread over the last 30 % of the age."""
    max_age = settings.ANVIL_STREAM_MAX_AGE_SECONDS
    return asyncio.get_running_loop().time() + max_age * random.uniform(1 - MAX_AGE_SPREAD, 1.0)


def _expire(subscriber: Subscriber) -> None:
    subscriber.close(retry_frame(reconnect_ms()))


def reconnect_ms() -> int:
    """The ``retry:`` a closed stream is sent: jittered per stream, so its clients do not come back together."""
    return random.randint(RECONNECT_MS_MIN, RECONNECT_MS_MAX)


# Set when the process is shutting down: new streams are refused, open ones have been ended.
draining = asyncio.Event()


def drain() -> int:
    """Stop taking streams and end every open one with a jittered ``retry:`` (on the loop); the number ended."""
    draining.set()
    ended = 0
    for subscribers in list(broadcaster.by_environment.values()):
        for subscriber in list(subscribers):
            if not subscriber.closed:
                subscriber.close(retry_frame(reconnect_ms()))
                ended += 1
    if ended:
        logger.info("shutting down: %d stream(s) ended with a retry hint", ended)
    return ended


def _drain_on_signals(loop: asyncio.AbstractEventLoop) -> None:
    """Chain :func:`drain` in front of the server's SIGTERM and SIGINT handlers (uvicorn's, in the main thread).

    uvicorn, told to exit, stops listening and then waits for open responses to end, up to its graceful
    timeout, before cancelling them (a ``CancelledError`` traceback per stream, no closing chunk, no
    ``retry:``). Ending the streams as the signal arrives lets every response finish properly at once.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous) or getattr(previous, "_anvil_drain", False):
            continue

        def handler(number: int, frame: Any, previous: Callable[..., Any] = previous) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(drain)
            previous(number, frame)

        handler._anvil_drain = True  # type: ignore[attr-defined]
        signal.signal(signum, handler)


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Start the broadcaster with the server, then freeze start-up objects out of the garbage collector.

    Every open stream adds objects to the heap; with start-up's long-lived objects frozen (and a higher
    first-generation threshold) full collections stay short and rare, which keeps the fan-out's tail low.
    """
    draining.clear()
    await broadcaster.start()
    await pusher.start()
    _drain_on_signals(asyncio.get_running_loop())
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    try:
        yield
    finally:
        drain()  # servers that run the lifespan's shutdown before ending responses
        await broadcaster.stop()
        await pusher.stop()
        # The check-ins answered but not yet written are written before the process exits.
        await asyncio.get_running_loop().run_in_executor(None, checkin_writer.stop)


live_stream = LiveStream()

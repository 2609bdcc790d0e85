"""``POST /api/v1/live/checkin`` as a raw ASGI endpoint beside Django (as the stream is).

Why not the Django view: under ASGI each Django request runs in a fresh thread that opens its own database
connection, so a flood of check-ins meant as many connections (and on SQLite as many writers queueing for
one lock: 503 ``database is locked``, seconds of latency, and descriptors SQLite keeps open while another
connection of the process holds a lock). Here a check-in costs the token check (cached for a second, else
one query in the stream's database threads, on kept connections), parsing, and a hand-over to the batch
writer (:mod:`~anvil_forge.distribution.checkin_writer`); the answer does not wait for the database write.

The answers are the Django view's (:func:`~anvil_forge.distribution.views.checkin`): same statuses, bodies,
headers and failure limiting. The Django view stays for servers without this route (and the test client).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from django.utils import timezone

from anvil_forge.core.middleware import DATABASE_DOWN, DATABASE_RETRY_SECONDS
from anvil_forge.distribution.broadcast import run_in_db_thread
from anvil_forge.distribution.caches import SingleFlight
from anvil_forge.distribution.checkin import MAX_CHECKIN_BYTES, CheckInError, parse_checkin
from anvil_forge.distribution.checkin_writer import checkin_writer
from anvil_forge.distribution.models import AccessToken, TokenKind
from anvil_forge.distribution.tokens import bearer_token, failure_limiter, loggable_prefix, token_hash

logger = logging.getLogger(__name__)

PATH = "/api/v1/live/checkin"
# A token found active is trusted this long without asking the database again: a revoked or expired token's
# check-ins are refused within this time (its streams close within a second too).
TOKEN_CACHE_SECONDS = 1.0
MAX_CACHED_TOKENS = 10_000
BUSY_RETRY_SECONDS = 5
Scope = dict[str, Any]

_tokens: dict[str, tuple[float, AccessToken]] = {}
_token_reads = SingleFlight()


def _authenticate(raw: str | None) -> AccessToken | None:
    from anvil_forge.distribution.services import token_authenticate

    return token_authenticate(raw, kind=TokenKind.LIVE)


async def _token(raw: str | None) -> AccessToken | None:
    if not raw:
        return None
    digest = token_hash(raw)
    cached = _tokens.get(digest)
    now = time.monotonic()
    if cached is not None and now - cached[0] < TOKEN_CACHE_SECONDS:
        token = cached[1]
        if token.expires_at is None or token.expires_at > timezone.now():
            return token
    token = await _token_reads.run(digest, lambda: run_in_db_thread(_authenticate, raw))
    if token is None:
        _tokens.pop(digest, None)
        return None
    if len(_tokens) >= MAX_CACHED_TOKENS:
        _tokens.clear()
    _tokens[digest] = (now, token)
    return token


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def _answer(send: Any, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(payload)),
                (b"x-content-type-options", b"nosniff"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The request body, or ``None`` when it is longer than ``limit`` or the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"x" * (limit + 1)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


class LiveCheckin:
    """The ASGI application of the check-in route."""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            await _answer(send, 405, {"error": "method not allowed"}, [(b"allow", b"POST")])
            return
        address = (scope.get("client") or ("", 0))[0]
        wait = failure_limiter.retry_after(address)
        if wait:
            await _answer(
                send, 429, {"error": "too many failed attempts; try again later"}, [(b"retry-after", b"%d" % wait)]
            )
            return
        raw = bearer_token(_header(scope, b"authorization"))
        try:
            token = await _token(raw)
        except Exception:
            logger.warning("check-in: the token check failed (database unavailable?)", exc_info=True)
            await _answer(send, 503, {"error": DATABASE_DOWN}, [(b"retry-after", DATABASE_RETRY_SECONDS.encode())])
            return
        if token is None:
            failure_limiter.record_failure(address)
            logger.warning("refused token %s from %s on %s", loggable_prefix(raw or ""), address, PATH)
            await _answer(send, 401, {"error": "invalid token"}, [(b"www-authenticate", b'Bearer realm="anvil"')])
            return
        declared = _header(scope, b"content-length") or "0"
        too_large = {"error": f"check-in larger than {MAX_CHECKIN_BYTES} bytes"}
        if declared.isdigit() and int(declared) > MAX_CHECKIN_BYTES:
            await _answer(send, 413, too_large)
            return
        body = await _read_body(receive, MAX_CHECKIN_BYTES)
        if body is None:
            return
        if len(body) > MAX_CHECKIN_BYTES:
            await _answer(send, 413, too_large)
            return
        try:
            parsed = parse_checkin(body)
        except CheckInError as exc:
            await _answer(send, 400, {"error": str(exc)})
            return
        now = timezone.now()
        if not checkin_writer.submit(token=token, checkin=parsed, received_at=now):
            await _answer(
                send,
                503,
                {"error": "this FORGE process has too many check-ins waiting to be recorded; check in again later"},
                [(b"retry-after", b"%d" % BUSY_RETRY_SECONDS)],
            )
            return
        from anvil_forge.distribution.rollouts import overlay as rollout_overlay
        from anvil_forge.distribution.rollouts import rollout_checkin_interval
        from anvil_forge.distribution.selectors import CHECKIN_INTERVAL_SECONDS

        # Shorter while a canary rollout runs in the environment, so its evaluator hears the signals sooner. The
        # signals themselves (canary versions too) are recorded by the writer, as the Django view records them.
        canaries = await rollout_overlay(token.environment_id)
        interval = rollout_checkin_interval(canaries, CHECKIN_INTERVAL_SECONDS)
        await _answer(
            send,
            200,
            {
                "ok": True,
                "server_time": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "checkin_interval": interval,
            },
        )


live_checkin = LiveCheckin()

"""``GET /api/v1/live/releases`` and ``GET /api/v1/live/bundles/<set>``, served as the stream is: raw ASGI
endpoints beside Django, reading through the in-memory caches of :mod:`~anvil_forge.distribution.caches`.

Why not Django: a token-authenticated JSON answer through Django under ASGI costs milliseconds of CPU (a thread
hop, the middleware chain, a database connection, ORM query building), while a polling client only asks
"still the same?". Here a cached answer costs a hash, two dictionary reads and two ``send`` calls; the database
is read (in the stream's database threads, on kept connections) only on a miss.

The answers are the Django views' (:mod:`~anvil_forge.distribution.views`): the same functions build them, and
the same statuses, bodies, headers, rate limits and logs come out. Django stays in front of anything these
routes do not take: other methods than GET and HEAD are still answered here (405), but a host that
``ALLOWED_HOSTS`` refuses, or a FORGE that redirects to HTTPS, goes to Django as before.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http.request import split_domain_port, validate_host

from anvil_forge.core.middleware import DATABASE_DOWN, DATABASE_RETRY_SECONDS
from anvil_forge.distribution import selectors
from anvil_forge.distribution.broadcast import broadcaster, run_in_db_thread
from anvil_forge.distribution.bundles import (
    BuiltBundle,
    bundle_for,
    cached_bundle,
    etag_matches,
    release_entry,
    servable,
    servable_state,
)
from anvil_forge.distribution.caches import CachedToken, SingleFlight, live_caches
from anvil_forge.distribution.models import AccessToken, TokenKind
from anvil_forge.distribution.rollouts import overlay as rollout_overlay
from anvil_forge.distribution.rollouts import releases_for_instance
from anvil_forge.distribution.tokens import (
    bearer_token,
    failure_limiter,
    loggable_prefix,
    token_hash,
    token_well_formed,
)

logger = logging.getLogger(__name__)

RELEASES_PATH = "/api/v1/live/releases"
BUNDLES_PATH = "/api/v1/live/bundles/{set_slug:slug}"
METHODS = ("GET", "HEAD")
# A cached token is checked in the database again when its ``last_used_at`` is this old, which writes it anew.
LAST_USED_SECONDS = 60.0
Scope = dict[str, Any]


# -- the answers (shared with the Django views) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiError:
    status: int
    message: str

    @property
    def body(self) -> bytes:
        return json.dumps({"error": self.message}).encode()


def releases_body(token: AccessToken) -> bytes:
    """The JSON of ``GET /api/v1/live/releases`` for ``token`` (it depends on the token's environment only)."""
    environment = token.environment
    current = selectors.current_releases(environment=environment)
    data = {
        "organisation": token.project.organisation.slug,
        "project": token.project.slug,
        "environment": environment.slug,
        "last_event_id": str(max((r.pk for r in current), default=0)),
        "releases": [release_entry(release) for release in current],
    }
    return json.dumps(data).encode()


def resolve_bundle(token: AccessToken, set_slug: str, wanted: str | None) -> BuiltBundle | ApiError:
    """The bundle ``GET /api/v1/live/bundles/<set_slug>[?version=<wanted>]`` serves to ``token``, or the error."""
    return _cached_bundle(token, set_slug, wanted) or _load_bundle(token, set_slug, wanted)


def _cached_bundle(token: AccessToken, set_slug: str, wanted: str | None) -> BuiltBundle | None:
    """The bundle to serve when it is already built, found with one narrow query (the polling clients' hot path)."""
    if wanted is not None and (not wanted.isdigit() or not 1 <= int(wanted) <= 2**31):
        return None  # the full path answers the error, in its usual order
    environment = token.environment
    row = selectors.bundle_key_row(
        environment_id=environment.pk,
        project_id=token.project_id,
        set_slug=set_slug,
        number=None if wanted is None else int(wanted),
    )
    if row is None:
        return None
    release_id, version_id, state, reviewed_at = row
    if wanted is not None and not servable_state(state, environment):
        return None
    return cached_bundle(
        version_id=version_id,
        state=state,
        reviewed_at=reviewed_at,
        environment_id=environment.pk,
        release_id=release_id,
    )


def _load_bundle(token: AccessToken, set_slug: str, wanted: str | None) -> BuiltBundle | ApiError:
    """The bundle to serve, loading the version and building it when needed, or the error to answer."""
    environment = token.environment
    prompt_set = selectors.prompt_set_in(project=token.project, slug=set_slug)
    if prompt_set is None:
        return ApiError(404, f"no prompt set {set_slug!r} in this project")
    if wanted is None:
        release = selectors.newest_release_of(environment=environment, prompt_set=prompt_set)
        if release is None:
            return ApiError(404, f"prompt set {set_slug!r} has no release in {environment.slug}")
        version = release.version
    else:
        if not wanted.isdigit() or not 1 <= int(wanted) <= 2**31:
            return ApiError(400, "version must be a whole number of 1 or more")
        version = selectors.version_of(prompt_set=prompt_set, number=int(wanted))
        if version is None or not servable(version, environment):
            return ApiError(404, f"prompt set {set_slug!r} has no version {wanted} that {environment.slug} may use")
        release = selectors.newest_release_of(environment=environment, prompt_set=prompt_set, version=version)
    return bundle_for(version=version, environment=environment, release=release)


# -- the ASGI side ----------------------------------------------------------------------------------------------


def _security_headers() -> list[tuple[bytes, bytes]]:
    """What Django's SecurityMiddleware and XFrameOptionsMiddleware add to every answer, from the settings."""
    headers = []
    if getattr(settings, "X_FRAME_OPTIONS", "DENY"):
        headers.append((b"x-frame-options", settings.X_FRAME_OPTIONS.encode()))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append((b"x-content-type-options", b"nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        value = policy if isinstance(policy, str) else ",".join(policy)
        headers.append((b"referrer-policy", value.encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append((b"cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode()))
    return headers


SECURITY = _security_headers()
JSON_TYPE = (b"content-type", b"application/json")
HTML_TYPE = (b"content-type", b"text/html; charset=utf-8")  # what Django gives a 304 without content
NO_CACHE = (b"cache-control", b"private, no-cache")
UNAUTHORISED = [(b"www-authenticate", b'Bearer realm="anvil"')]
# Django answers these itself (an HTTPS redirect, HSTS on https requests): the fast routes step aside.
DJANGO_ONLY = bool(settings.SECURE_SSL_REDIRECT or settings.SECURE_HSTS_SECONDS)
_good_hosts: set[bytes] = set()
_token_reads = SingleFlight()  # a token cache miss reads the database once however many requests missed


def _host_allowed(host: bytes | None) -> bool:
    if host is None:
        return False
    if host in _good_hosts:
        return True
    domain, _port = split_domain_port(host.decode("latin-1"))
    if domain and validate_host(domain, settings.ALLOWED_HOSTS):
        if len(_good_hosts) < 64:
            _good_hosts.add(host)
        return True
    return False


async def _answer(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]], head: bool) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", b"%d" % len(body)), *SECURITY],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _error(
    send: Any, status: int, message: str, head: bool, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _answer(send, status, ApiError(status, message).body, [JSON_TYPE, *(headers or ())], head)


def _authenticate(raw: str, digest: str, generation: int) -> AccessToken | None:
    """The database side of a token cache miss (in a database thread): check the token and cache it when active."""
    from anvil_forge.distribution.services import token_authenticate

    read_at = time.monotonic()
    token = token_authenticate(raw, kind=TokenKind.LIVE)
    if token is not None:
        expires = token.expires_at.timestamp() if token.expires_at else None
        used = token.last_used_at.timestamp() if token.last_used_at else time.time()
        entry = CachedToken(
            token=token,
            environment_id=token.environment_id,
            project_id=token.project_id,
            expires_at=expires,
            last_used_at=used,
            read_at=read_at,
        )
        live_caches.put_token(digest, entry, generation)
    return token


def _releases_fill(token: AccessToken, generation: int) -> bytes:
    read_at = time.monotonic()
    body = releases_body(token)
    live_caches.put_releases(token.environment_id, body, generation, read_at)
    return body


def _bundle_fill(token: AccessToken, key: tuple[int, int, str, str | None], generation: int) -> BuiltBundle | ApiError:
    read_at = time.monotonic()
    answer = resolve_bundle(token, key[2], key[3])
    if key[3] is None or len(key[3]) <= 12:  # garbage version strings are answered, not kept
        live_caches.put_bundle(key, answer, generation, read_at)
    return answer


class _Request:
    """What the endpoints read from the scope, in one pass over the headers."""

    __slots__ = ("address", "authorization", "head", "host", "if_none_match", "instance", "method")

    def __init__(self, scope: Scope) -> None:
        self.method: str = scope["method"]
        self.head = self.method == "HEAD"
        self.address: str = (scope.get("client") or ("", 0))[0]
        self.authorization: bytes | None = None
        self.if_none_match: bytes | None = None
        self.host: bytes | None = None
        self.instance: str | None = None  # X-Anvil-Instance: a rollout may answer this instance differently
        for name, value in scope["headers"]:
            if name == b"authorization":
                self.authorization = value
            elif name == b"if-none-match":
                self.if_none_match = value
            elif name == b"host":
                self.host = value
            elif name == b"x-anvil-instance":
                self.instance = value.decode("latin-1")[:64]


class LiveEndpoint:
    """The common part: method, host, rate limit and token, then :meth:`serve` with the cached token."""

    def __init__(self, django_app: Any) -> None:
        self.django_app = django_app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        request = _Request(scope)
        if DJANGO_ONLY or not _host_allowed(request.host):
            await self.django_app(scope, receive, send)  # Django answers the host (400) as it always did
            return
        if request.method not in METHODS:
            await _error(send, 405, "method not allowed", False, [(b"allow", b"GET, HEAD")])
            return
        address = request.address
        wait = failure_limiter.retry_after(address)
        if wait:
            retry = [(b"retry-after", b"%d" % wait)]
            await _error(send, 429, "too many failed attempts; try again later", request.head, retry)
            return
        raw = bearer_token(request.authorization.decode("latin-1")) if request.authorization else None
        cached = await self._token(raw)
        if cached is None:
            failure_limiter.record_failure(address)
            logger.warning("refused token %s from %s on %s", loggable_prefix(raw or ""), address, scope["path"])
            await _error(send, 401, "invalid token", request.head, UNAUTHORISED)
            return
        await self.serve(scope, request, cached, send)

    async def _token(self, raw: str | None) -> CachedToken | None:
        if not raw or not token_well_formed(raw):
            return None
        digest = token_hash(raw)
        cached = live_caches.token(digest) if broadcaster.caches_usable() else None
        now = time.time()
        fresh = cached is not None and now - cached.last_used_at < LAST_USED_SECONDS
        if cached is not None and fresh and hmac.compare_digest(cached.token.token_hash, digest):
            if cached.expires_at is not None and cached.expires_at <= now:
                return None
            return cached
        # A miss (or ``last_used_at`` is a minute old: the database check writes it again).
        await _started()
        generation = live_caches.generation
        token = await _token_reads.run(
            (digest, generation), lambda: run_in_db_thread(_authenticate, raw, digest, generation)
        )
        if token is None:
            return None
        return CachedToken(
            token=token,
            environment_id=token.environment_id,
            project_id=token.project_id,
            expires_at=None,
            last_used_at=now,
            read_at=time.monotonic(),
        )

    async def serve(self, scope: Scope, request: _Request, cached: CachedToken, send: Any) -> None:
        raise NotImplementedError


async def _started() -> None:
    """The broadcaster keeps the caches exact: make sure it runs before anything is cached."""
    if not broadcaster.running:
        await broadcaster.start()


class Releases(LiveEndpoint):
    async def serve(self, scope: Scope, request: _Request, cached: CachedToken, send: Any) -> None:
        body = live_caches.releases_body(cached.environment_id) if broadcaster.caches_usable() else None
        if body is None:
            await _started()
            body = await run_in_db_thread(_releases_fill, cached.token, live_caches.generation)
        if request.instance:  # canary rollouts answer their chosen instances with the canary's entry
            body = releases_for_instance(body, await rollout_overlay(cached.environment_id), request.instance)
        await _answer(send, 200, body, [JSON_TYPE], request.head)


class Bundles(LiveEndpoint):
    async def serve(self, scope: Scope, request: _Request, cached: CachedToken, send: Any) -> None:
        set_slug: str = scope["path_params"]["set_slug"]
        wanted = _version_parameter(scope.get("query_string") or b"")
        key = (cached.environment_id, cached.project_id, set_slug, wanted)
        answer = live_caches.bundle(key) if broadcaster.caches_usable() else None
        if answer is None:
            await _started()
            answer = await run_in_db_thread(_bundle_fill, cached.token, key, live_caches.generation)
        if isinstance(answer, ApiError):
            await _error(send, answer.status, answer.message, request.head)
            return
        etag = answer.etag.encode()
        if request.if_none_match is not None and etag_matches(request.if_none_match.decode("latin-1"), answer.etag):
            await _answer(send, 304, b"", [HTML_TYPE, (b"etag", etag), NO_CACHE], request.head)
        else:
            await _answer(send, 200, answer.body, [JSON_TYPE, (b"etag", etag), NO_CACHE], request.head)


def _version_parameter(query: bytes) -> str | None:
    """``version`` of the query string as Django's ``request.GET.get("version")`` reads it (the last one)."""
    if b"version" not in query:
        return None
    wanted = None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True, encoding="utf-8", errors="replace"):
        if name == "version":
            wanted = value
    return wanted


class DatabaseDown:
    """Wraps an endpoint: a lost database is a 503 with ``Retry-After``, as Django's middleware answers it."""

    def __init__(self, endpoint: LiveEndpoint) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        try:
            await self.endpoint(scope, receive, send)
        except (OperationalError, InterfaceError) as exc:
            logger.warning("database unavailable on %s %s: %s", scope["method"], scope["path"], exc)
            retry = [(b"retry-after", DATABASE_RETRY_SECONDS.encode())]
            await _error(send, 503, DATABASE_DOWN, scope["method"] == "HEAD", retry)


def routes(django_app: Any) -> list[Any]:
    """The Starlette routes of the two endpoints (placed before Django's mount in ``asgi.py``)."""
    from starlette.convertors import Convertor, register_url_convertor
    from starlette.routing import Route

    class SlugConvertor(Convertor[str]):
        regex = "[-a-zA-Z0-9_]+"  # Django's <slug:...>: anything else goes on to Django (its 404)

        def convert(self, value: str) -> str:
            return value

        def to_string(self, value: str) -> str:
            return value

    register_url_convertor("slug", SlugConvertor())
    return [
        Route(RELEASES_PATH, endpoint=DatabaseDown(Releases(django_app)), name="live-releases"),
        Route(BUNDLES_PATH, endpoint=DatabaseDown(Bundles(django_app)), name="live-bundle"),
    ]

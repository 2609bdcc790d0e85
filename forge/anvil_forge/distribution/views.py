"""The LIVE HTTP API (``/api/v1/live/...``): token-authenticated JSON, no cookies, no CSRF.

Views only authenticate, parse, call a selector or service and answer. The stream is not here: it is a
Starlette endpoint (:mod:`anvil_forge.distribution.stream`) so an idle connection does not hold a thread.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import cache, wraps
from pathlib import Path

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from anvil_forge.distribution import selectors, services
from anvil_forge.distribution.bundles import (
    BuiltBundle,
    bundle_for,
    cached_bundle,
    etag_matches,
    release_entry,
    servable,
    servable_state,
)
from anvil_forge.distribution.checkin import MAX_CHECKIN_BYTES, CheckInError, parse_checkin
from anvil_forge.distribution.models import AccessToken, TokenKind
from anvil_forge.distribution.tokens import bearer_token, failure_limiter, loggable_prefix

logger = logging.getLogger(__name__)

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
View = Callable[..., HttpResponse]


def error(message: str, status: int, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def refuse_token(address: str, raw: str | None, *, where: str) -> None:
    """Count a failed token for ``address`` and log it with the token's readable prefix only."""
    failure_limiter.record_failure(address)
    logger.warning("refused token %s from %s on %s", loggable_prefix(raw or ""), address, where)


def live_api(*methods: str) -> Callable[[View], View]:
    """Decorate a LIVE API view: allowed methods, failure limiting, ``live`` token -> ``request.access_token``."""

    def decorate(view: View) -> View:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            if request.method not in methods:
                return error("method not allowed", 405, Allow=", ".join(methods))
            address = request.META.get("REMOTE_ADDR", "")
            wait = failure_limiter.retry_after(address)
            if wait:
                return error("too many failed attempts; try again later", 429, Retry_After=str(wait))
            raw = bearer_token(request.headers.get("Authorization"))
            token = services.token_authenticate(raw, kind=TokenKind.LIVE)
            if token is None:
                refuse_token(address, raw, where=request.path)
                return error("invalid token", 401, WWW_Authenticate='Bearer realm="anvil"')
            request.access_token = token  # type: ignore[attr-defined]
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


@live_api("GET", "HEAD")
def releases(request: HttpRequest) -> HttpResponse:
    token: AccessToken = request.access_token  # type: ignore[attr-defined]
    environment = token.environment
    current = selectors.current_releases(environment=environment)
    return JsonResponse(
        {
            "organisation": token.project.organisation.slug,
            "project": token.project.slug,
            "environment": environment.slug,
            "last_event_id": str(max((r.pk for r in current), default=0)),
            "releases": [release_entry(release) for release in current],
        }
    )


@live_api("GET", "HEAD")
def bundle(request: HttpRequest, set_slug: str) -> HttpResponse:
    token: AccessToken = request.access_token  # type: ignore[attr-defined]
    wanted = request.GET.get("version")
    built = _cached_bundle(token, set_slug, wanted)
    if built is None:
        answer = _load_bundle(token, set_slug, wanted)
        if isinstance(answer, HttpResponse):
            return answer
        built = answer
    headers = {"ETag": built.etag, "Cache-Control": "private, no-cache"}
    if etag_matches(request.headers.get("If-None-Match"), built.etag):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(built.body, content_type="application/json")
    for name, value in headers.items():
        response[name] = value
    return response


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


def _load_bundle(token: AccessToken, set_slug: str, wanted: str | None) -> BuiltBundle | HttpResponse:
    """The bundle to serve, loading the version and building it when needed, or the error to answer."""
    environment = token.environment
    prompt_set = selectors.prompt_set_in(project=token.project, slug=set_slug)
    if prompt_set is None:
        return error(f"no prompt set {set_slug!r} in this project", 404)
    if wanted is None:
        release = selectors.newest_release_of(environment=environment, prompt_set=prompt_set)
        if release is None:
            return error(f"prompt set {set_slug!r} has no release in {environment.slug}", 404)
        version = release.version
    else:
        if not wanted.isdigit() or not 1 <= int(wanted) <= 2**31:
            return error("version must be a whole number of 1 or more", 400)
        version = selectors.version_of(prompt_set=prompt_set, number=int(wanted))
        if version is None or not servable(version, environment):
            return error(f"prompt set {set_slug!r} has no version {wanted} that {environment.slug} may use", 404)
        release = selectors.newest_release_of(environment=environment, prompt_set=prompt_set, version=version)
    return bundle_for(version=version, environment=environment, release=release)


@live_api("POST")
def checkin(request: HttpRequest) -> HttpResponse:
    token: AccessToken = request.access_token  # type: ignore[attr-defined]
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > MAX_CHECKIN_BYTES:
        return error(f"check-in larger than {MAX_CHECKIN_BYTES} bytes", 413)
    body = request.read(MAX_CHECKIN_BYTES + 1)
    if len(body) > MAX_CHECKIN_BYTES:
        return error(f"check-in larger than {MAX_CHECKIN_BYTES} bytes", 413)
    try:
        parsed = parse_checkin(body)
    except CheckInError as exc:
        return error(str(exc), 400)
    services.instance_checkin(token=token, checkin=parsed)
    return JsonResponse(
        {
            "ok": True,
            "server_time": timezone.now().isoformat(timespec="seconds").replace("+00:00", "Z"),
            "checkin_interval": selectors.CHECKIN_INTERVAL_SECONDS,
        }
    )


@cache
def _openapi_bytes() -> bytes:
    return json.dumps(json.loads(OPENAPI_PATH.read_text(encoding="utf-8")), indent=1).encode("utf-8")


def openapi(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return error("method not allowed", 405, Allow="GET, HEAD")
    return HttpResponse(_openapi_bytes(), content_type="application/json")

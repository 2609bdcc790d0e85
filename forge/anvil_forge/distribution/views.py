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

from anvil_forge.distribution import live_api as answers
from anvil_forge.distribution import selectors, services
from anvil_forge.distribution.bundles import etag_matches
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
    # Under uvicorn the ASGI route of live_api.py answers first, from its caches; this view builds the same
    # answer from the database (the Django test client, and any server without that route).
    token: AccessToken = request.access_token  # type: ignore[attr-defined]
    body = answers.releases_body(token)
    instance = (request.headers.get("X-Anvil-Instance") or "")[:64]
    if instance:  # canary rollouts answer their chosen instances with the canary's entry
        from anvil_forge.distribution.rollouts import overlay_sync, releases_for_instance

        body = releases_for_instance(body, overlay_sync(token.environment_id), instance)
    return HttpResponse(body, content_type="application/json")


@live_api("GET", "HEAD")
def bundle(request: HttpRequest, set_slug: str) -> HttpResponse:
    token: AccessToken = request.access_token  # type: ignore[attr-defined]
    built = answers.resolve_bundle(token, set_slug, request.GET.get("version"))
    if isinstance(built, answers.ApiError):
        return error(built.message, built.status)
    headers = {"ETag": built.etag, "Cache-Control": "private, no-cache"}
    if etag_matches(request.headers.get("If-None-Match"), built.etag):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(built.body, content_type="application/json")
    for name, value in headers.items():
        response[name] = value
    return response


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
    services.instance_checkin(token=token, checkin=parsed)  # records the signals, as the ASGI route's writer does
    from anvil_forge.distribution.rollouts import overlay_sync, rollout_checkin_interval

    canaries = overlay_sync(token.environment_id)
    return JsonResponse(
        {
            "ok": True,
            "server_time": timezone.now().isoformat(timespec="seconds").replace("+00:00", "Z"),
            "checkin_interval": rollout_checkin_interval(canaries, selectors.CHECKIN_INTERVAL_SECONDS),
        }
    )


@cache
def _openapi_bytes() -> bytes:
    return json.dumps(json.loads(OPENAPI_PATH.read_text(encoding="utf-8")), indent=1).encode("utf-8")


def openapi(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return error("method not allowed", 405, Allow="GET, HEAD")
    return HttpResponse(_openapi_bytes(), content_type="application/json")

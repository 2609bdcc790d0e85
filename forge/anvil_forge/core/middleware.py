"""Maps :class:`ApplicationError` raised by a view to an HTTP response, once for the whole FORGE.

A lost database (``OperationalError`` / ``InterfaceError``: the server is down, refuses connections, or the
SQLite file cannot be opened) is answered 503 with ``Retry-After`` and a message that says so, not 500: it is
an outage the FORGE recovers from by itself when the database returns, and LIVE clients retry on their own.

Under ``/api/`` every error is JSON ``{"error": ...}`` (docs/protocol.md), including the ones Django answers
itself (an unknown address, a server error). :class:`ContentSecurityPolicyMiddleware` adds the FORGE's
Content-Security-Policy to every response.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.utils.html import escape

from anvil_forge.core.exceptions import ApplicationError

logger = logging.getLogger(__name__)

DATABASE_DOWN = "the FORGE cannot reach its database; try again in a few seconds"
DATABASE_RETRY_SECONDS = "5"


# Scripts, styles, fonts and images only from the FORGE itself (htmx and Pico are committed static files); no
# inline script or style anywhere (htmx's indicator styles are off: the htmx-config meta tag in base.html), no
# eval (htmx's allowEval is off too), no plugins, no framing, forms post only back to the FORGE. Pico's icons
# are data: SVG images inside its CSS, hence img-src data:.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    """Sends :data:`CONTENT_SECURITY_POLICY` with every response that does not carry its own.

    A fixed policy needs no nonces, so this is one header, not a dependency (django-csp earns its keep with
    per-request nonces and per-view policies, which the FORGE does not use). It sits near the top of
    ``MIDDLEWARE`` so error pages (403, 404, 500, the 503 of a lost database) get it too.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response


class ApplicationErrorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith("/api/") and response.status_code >= 400 and not _is_json(response):
            return _json_error(response)
        return response

    def process_view(self, request: HttpRequest, view: Callable, args: tuple, kwargs: dict) -> HttpResponse | None:
        """Refuse a NUL character in the address or a form field before any view sees it: no text the FORGE
        keeps may hold one, and PostgreSQL refuses it in every text column and query (a 500 otherwise)."""
        field = _field_with_nul(request, view)
        if field is None:
            return None
        message = f"{field} contains a NUL character (\\x00): no text on the FORGE may hold one."
        return self.process_exception(request, ApplicationError(message, {"field": field}))

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, OperationalError | InterfaceError):
            return _database_down(request, exception)
        if not isinstance(exception, ApplicationError):
            return None
        if request.path.startswith("/api/"):
            return JsonResponse(
                {"error": exception.message, **({"details": exception.extra} if exception.extra else {})},
                status=exception.status_code,
            )
        return TemplateResponse(
            request, "web/error.html", {"message": exception.message}, status=exception.status_code
        )


def _field_with_nul(request: HttpRequest, view: Callable) -> str | None:
    """The first place of the request holding a NUL: "The address", or the name of a query or form field.

    The form is read as the CSRF check reads it: not for a view exempt from that check (the API, which reads
    JSON; the import, which sets its own upload handlers and must be the first to read a multipart body),
    unless it is URL-encoded or has been read already."""
    if "\x00" in request.path:
        return "The address"
    read = (
        not getattr(view, "csrf_exempt", False)
        or request.content_type == "application/x-www-form-urlencoded"
        or hasattr(request, "_post")
    )
    sources = [request.GET] + ([request.POST] if read and request.method == "POST" else [])
    for data in sources:
        for name, values in data.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                return f"The field {name.replace(chr(0), '?')[:60]!r}"
    return None


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").split(";")[0].strip() == "application/json"


def _json_error(response: HttpResponse) -> JsonResponse:
    """An error Django answered as a page (an unknown address under /api/, a server error) as the API's JSON.

    docs/protocol.md promises ``{"error": ...}`` for every error under /api/; headers that matter to a client
    (Allow, Retry-After, WWW-Authenticate) are kept.
    """
    converted = JsonResponse({"error": response.reason_phrase.lower()}, status=response.status_code)
    for header in ("Allow", "Retry-After", "WWW-Authenticate", "Cache-Control"):
        if header in response:
            converted[header] = response[header]
    return converted


def _database_down(request: HttpRequest, exception: Exception) -> HttpResponse:
    logger.warning("database unavailable on %s %s: %s", request.method, request.path, exception)
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse({"error": DATABASE_DOWN}, status=503)
    else:  # a plain page: the usual frame reads the database (navigation, session), which is what is missing
        response = HttpResponse(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>FORGE unavailable</title></head>"
            f"<body><main><h1>The FORGE is unavailable</h1><p>{escape(DATABASE_DOWN.capitalize())}.</p>"
            "<p>Nothing was saved. LIVE applications keep serving their prompts meanwhile.</p></main></body></html>",
            status=503,
            content_type="text/html; charset=utf-8",
        )
    response["Retry-After"] = DATABASE_RETRY_SECONDS
    return response

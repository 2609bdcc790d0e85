"""htmx fragments never get the sign-in page (or a CSRF failure page) swapped into them.

A fragment request (``HX-Request``) made after the session ended would follow ``login_required``'s redirect
and swap the whole sign-in page into the preview panel, moving the focus into its username field. This
middleware answers such requests with 401 instead, ``HX-Reswap: none`` (nothing is swapped) and
``X-Anvil-Problem: signed-out``; ``anvil.js`` shows a notice in ``#htmx-problem`` and leaves focus and text
where they are. A fragment refused by the CSRF check (the sign-in changed in another tab) gets 403 with
``X-Anvil-Problem: csrf`` the same way.

It sits after ``AuthenticationMiddleware`` and ``CsrfViewMiddleware`` in ``MIDDLEWARE``: its
``process_view`` runs only when the CSRF check let the request through, which is how a CSRF refusal is told
from a view's own 403.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url

SIGNED_OUT = "You were signed out. Sign in again in another tab; your text is kept here."
CSRF_REFUSED = "Your sign-in changed in another tab. Your text is kept here; save or reload once you are signed in."

_REACHED = "_anvil_view_reached"


class HtmxSessionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.headers.get("HX-Request") != "true":
            return response
        user = getattr(request, "user", None)
        if response.status_code == 302 and not (user and user.is_authenticated) and _to_sign_in(response):
            return _refusal(401, "signed-out", SIGNED_OUT)
        if response.status_code == 403 and request.method == "POST" and not getattr(request, _REACHED, False):
            return _refusal(403, "csrf", CSRF_REFUSED)
        return response

    def process_view(self, request: HttpRequest, view: Callable, args: tuple, kwargs: dict) -> None:
        setattr(request, _REACHED, True)


def _to_sign_in(response: HttpResponse) -> bool:
    location = urlsplit(response.get("Location", "")).path
    return location == urlsplit(resolve_url(settings.LOGIN_URL)).path


def _refusal(status: int, problem: str, message: str) -> HttpResponse:
    response = HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
    response["HX-Reswap"] = "none"
    response["X-Anvil-Problem"] = problem
    response["Cache-Control"] = "no-store"
    return response

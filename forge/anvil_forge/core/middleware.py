"""Maps :class:`ApplicationError` raised by a view to an HTTP response, once for the whole FORGE."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse

from anvil_forge.core.exceptions import ApplicationError


class ApplicationErrorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
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

"""The read-only peer API (``/api/v1/peer/...``): what another FORGE may read with a ``peer`` ACCESS_TOKEN.

A peer token is scoped to one project (and one environment, which bundles name): the API shows that
project's organisation and project, its prompt sets that have approved versions, those versions, and each
as an ``anvil.bundle/1`` bundle. Only GET (and HEAD). A wrong, expired or revoked token is 401 without
saying which; anything outside the token's project is 404, the same as what does not exist.

Lists are paginated: ``?page=N&per_page=M`` (M from 1 to 100, default 50) answer
``{"items": [...], "page", "per_page", "total", "next_page"}`` (``next_page`` is ``null`` on the last page).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.distribution import services as distribution_services
from anvil_forge.distribution.bundles import bundle_for
from anvil_forge.distribution.models import AccessToken, TokenKind
from anvil_forge.distribution.tokens import bearer_token, failure_limiter, loggable_prefix
from anvil_forge.peering import selectors

View = Callable[..., HttpResponse]
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 50


def _error(message: str, status: int, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def peer_api(view: View) -> View:
    """GET/HEAD only, failed-token limiting, a ``peer`` token -> ``request.access_token``; errors as JSON."""

    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return _error("method not allowed: the peer API is read-only", 405, Allow="GET, HEAD")
        address = request.META.get("REMOTE_ADDR", "")
        wait = failure_limiter.retry_after(address)
        if wait:
            return _error("too many failed attempts; try again later", 429, Retry_After=str(wait))
        raw = bearer_token(request.headers.get("Authorization"))
        token = distribution_services.token_authenticate(raw, kind=TokenKind.PEER)
        if token is None:
            failure_limiter.record_failure(address)
            selectors.logger.warning(
                "refused peer token %s from %s on %s", loggable_prefix(raw or ""), address, request.path
            )
            return _error("invalid token", 401, WWW_Authenticate='Bearer realm="anvil"')
        request.access_token = token  # type: ignore[attr-defined]
        try:
            return view(request, token, *args, **kwargs)
        except ApplicationError as exc:
            return _error(exc.message, exc.status_code)

    return wrapper


def _page(request: HttpRequest, queryset: QuerySet, describe: Callable[[Any], dict[str, Any]]) -> JsonResponse:
    page_number = _positive(request.GET.get("page", "1"), "page")
    per_page = _positive(request.GET.get("per_page", str(DEFAULT_PER_PAGE)), "per_page")
    if per_page > MAX_PER_PAGE:
        raise ApplicationError(f"per_page may be at most {MAX_PER_PAGE}.")
    paginator = Paginator(queryset, per_page)
    total = paginator.count
    pages = max(1, paginator.num_pages)
    items = [describe(item) for item in paginator.get_page(page_number).object_list] if page_number <= pages else []
    return JsonResponse(
        {
            "items": items,
            "page": page_number,
            "per_page": per_page,
            "total": total,
            "next_page": page_number + 1 if page_number < pages else None,
        }
    )


def _positive(value: str, name: str) -> int:
    if not value.isdigit() or int(value) < 1 or len(value) > 9:
        raise ApplicationError(f"{name} must be a whole number of 1 or more.")
    return int(value)


@peer_api
def projects(request: HttpRequest, token: AccessToken) -> HttpResponse:
    return _page(request, selectors.peer_api_projects(token=token), selectors.describe_project)


@peer_api
def sets(request: HttpRequest, token: AccessToken, organisation: str, project: str) -> HttpResponse:
    found = selectors.peer_api_project(token=token, organisation_slug=organisation, project_slug=project)
    return _page(request, selectors.peer_api_sets(project=found), selectors.describe_set)


@peer_api
def versions(request: HttpRequest, token: AccessToken, organisation: str, project: str, set_slug: str) -> HttpResponse:
    found = selectors.peer_api_project(token=token, organisation_slug=organisation, project_slug=project)
    prompt_set = selectors.peer_api_set(project=found, slug=set_slug)
    return _page(request, selectors.peer_api_versions(prompt_set=prompt_set), selectors.describe_version)


@peer_api
def version(
    request: HttpRequest, token: AccessToken, organisation: str, project: str, set_slug: str, number: int
) -> HttpResponse:
    found = selectors.peer_api_project(token=token, organisation_slug=organisation, project_slug=project)
    prompt_set = selectors.peer_api_set(project=found, slug=set_slug)
    approved = selectors.peer_api_version(prompt_set=prompt_set, number=number)
    release = selectors.release_of(version=approved, environment=token.environment)
    built = bundle_for(version=approved, environment=token.environment, release=release)
    response = HttpResponse(built.body, content_type="application/json")
    response["ETag"] = built.etag
    return response

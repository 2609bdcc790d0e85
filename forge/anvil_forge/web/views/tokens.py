"""Project ACCESS_TOKENs: create (shown once), list with last use, revoke with confirmation."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache

from anvil_forge.core.exceptions import ApplicationError, NotFound
from anvil_forge.distribution import services
from anvil_forge.distribution.models import AccessToken, TokenKind
from anvil_forge.distribution.selectors import tokens_for
from anvil_forge.distribution.tokens import MAX_EXPIRY_DAYS, expiry_after
from anvil_forge.prompts import selectors
from anvil_forge.web.access import place_get


def _token_page(request: HttpRequest, org: str, *, status: int = 200, **extra) -> HttpResponse:
    place = place_get(request, org)
    managed = "manage_tokens" in place.caps
    projects = list(selectors.projects_for(actor=request.user, organisation=place.organisation))
    tokens = []
    if managed:
        for project in projects:
            tokens += list(tokens_for(actor=request.user, project=project))
    environments = [
        (project, list(selectors.environments_for(actor=request.user, project=project))) for project in projects
    ]
    form = {
        "target": request.GET.get("project", ""),
        "kind": "live",
        "name": "",
        "expires_days": "",
        **extra.pop("form", {}),
    }
    return render(
        request,
        "web/tokens.html",
        {
            **place.context(),
            "managed": managed,
            "tokens": tokens,
            "environments": environments,
            "kinds": TokenKind.choices,
            "form": form,
            "now": timezone.now(),
            **extra,
        },
        status=status,
    )


@login_required
@never_cache
def token_list(request: HttpRequest, org: str) -> HttpResponse:
    if request.method != "POST":
        return _token_page(request, org)
    form = {
        "target": request.POST.get("target", ""),
        "kind": request.POST.get("kind", "live"),
        "name": request.POST.get("name", ""),
        "expires_days": request.POST.get("expires_days", "").strip(),
    }
    try:
        project_slug, _, environment_slug = form["target"].partition("/")
        if not project_slug or not environment_slug:
            raise ApplicationError("Choose the project and environment the token is for.")
        project = selectors.project_get(actor=request.user, organisation_slug=org, project_slug=project_slug)
        environment = selectors.environment_get(actor=request.user, project=project, slug=environment_slug)
        expires_at = _expires_at(form["expires_days"])
        token, raw = services.token_create(
            actor=request.user,
            project=project,
            environment=environment,
            kind=form["kind"],
            name=form["name"],
            expires_at=expires_at,
        )
    except ApplicationError as exc:
        return _token_page(request, org, status=exc.status_code, error=exc.message, form=form)
    return _token_page(
        request,
        org,
        created=token,
        raw=raw,
        forge_url=settings.ANVIL_PUBLIC_URL or request.build_absolute_uri("/").rstrip("/"),
    )


def _expires_at(text: str) -> datetime | None:
    """The expiry typed in days (empty: never); ApplicationError naming the field for anything else."""
    if not text:
        return None
    try:
        days = int(text) if text.isascii() and len(text) <= 10 else 0
        return expiry_after(days, now=timezone.now())
    except ValueError:
        raise ApplicationError(
            f"Expires after (days) must be a whole number of days from 1 to {MAX_EXPIRY_DAYS}, "
            "or empty for no expiry.",
            {"field": "expires_days"},
        ) from None


@login_required
def token_revoke(request: HttpRequest, org: str, token_id: int) -> HttpResponse:
    place = place_get(request, org)
    found = (
        AccessToken.objects.filter(pk=token_id, project__organisation=place.organisation)
        .select_related("project")
        .first()
    )
    if found is None:
        raise NotFound("No such token.")
    token = tokens_for(actor=request.user, project=found.project).get(pk=found.pk)
    error, status = "", 200
    if request.method == "POST":
        try:
            services.token_revoke(actor=request.user, token=token)
        except ApplicationError as exc:
            error, status = exc.message, exc.status_code
        else:
            messages.success(request, f"Revoked {token.prefix}… ({token.name}). Applications using it are cut off now.")
            return redirect("web:tokens", org)
    return render(
        request,
        "web/token_revoke.html",
        {**place.context(), "token": token, "error": error},
        status=status,
    )

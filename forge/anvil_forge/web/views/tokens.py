"""Project ACCESS_TOKENs: list with last use."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from anvil_forge.distribution.models import AccessToken
from anvil_forge.web.access import organisation_get


@login_required
def token_list(request: HttpRequest, org: str) -> HttpResponse:
    organisation = organisation_get(request, org)
    rows = AccessToken.objects.filter(project__organisation=organisation).select_related(
        "project", "environment", "created_by"
    )
    return render(request, "web/tokens.html", {"organisation": organisation, "tokens": rows})

"""The project page: its prompt sets, their status, and where each version is live on how many instances."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.distribution.selectors import distribution_state
from anvil_forge.notifications.services import last_visit_record
from anvil_forge.prompts import selectors, services
from anvil_forge.web.access import Place, place_get


@login_required
def project_detail(request: HttpRequest, org: str, project: str) -> HttpResponse:
    place = place_get(request, org, project)
    last_visit_record(user=request.user, project=place.project)  # where signing in lands next time
    return _project_page(request, place)


@login_required
@require_POST
def prompt_set_add(request: HttpRequest, org: str, project: str) -> HttpResponse:
    place = place_get(request, org, project)
    form = {key: request.POST.get(key, "").strip() for key in ("slug", "name", "description")}
    try:
        created = services.prompt_set_create(actor=request.user, project=place.project, **form)
    except ApplicationError as exc:
        return _project_page(request, place, status=exc.status_code, set_error=exc.message, set_form=form)
    messages.success(request, f"Created the prompt set {created.name}. Add its first prompt below.")
    return redirect("web:set", org, project, created.slug)


def _project_page(request: HttpRequest, place: Place, *, status: int = 200, **extra: Any) -> HttpResponse:
    state = distribution_state(actor=request.user, project=place.project)
    sets = list(selectors.prompt_sets_for(actor=request.user, project=place.project))
    rows: dict[int, list] = {prompt_set.pk: [] for prompt_set in sets}
    for row in state:
        rows.setdefault(row.prompt_set.pk, []).append(row)
    latest = {
        prompt_set.pk: selectors.versions_for(actor=request.user, prompt_set=prompt_set).first() for prompt_set in sets
    }
    return render(
        request,
        "web/project.html",
        {
            **place.context(),
            "sets": [(prompt_set, rows.get(prompt_set.pk, []), latest[prompt_set.pk]) for prompt_set in sets],
            "environments": selectors.environments_for(actor=request.user, project=place.project),
            "set_form": {},
            **extra,
        },
        status=status,
    )

"""The project page: its prompt sets, their status, and where each version is live on how many instances."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from anvil_forge.distribution.selectors import distribution_state
from anvil_forge.prompts import selectors
from anvil_forge.web.access import place_get


@login_required
def project_detail(request: HttpRequest, org: str, project: str) -> HttpResponse:
    place = place_get(request, org, project)
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
        },
    )

"""The project page: its prompt sets, their status, and where each version is live."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from anvil_forge.prompts.models import Project
from anvil_forge.web.access import organisation_get


@login_required
def project_detail(request: HttpRequest, org: str, project: str) -> HttpResponse:
    organisation = organisation_get(request, org)
    found = get_object_or_404(Project.objects.filter(organisation=organisation), slug=project)
    return render(
        request,
        "web/project.html",
        {
            "organisation": organisation,
            "project": found,
            "prompt_sets": found.prompt_sets.all(),
            "environments": found.environments.all(),
        },
    )

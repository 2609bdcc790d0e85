"""Reads of the management API that the other apps' selectors do not already offer, scoped by the actor."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from anvil_forge.accounts.permissions import Actor, Capability, require
from anvil_forge.core.exceptions import NotFound
from anvil_forge.distribution.models import Release
from anvil_forge.prompts.models import Environment, Project, PromptSet


def releases_for(
    *, actor: Actor, project: Project, environment: Environment | None = None, prompt_set: PromptSet | None = None
) -> QuerySet[Release]:
    """Every release of ``project`` (newest first), optionally of one environment and/or set."""
    require(actor, project.organisation, Capability.VIEW, what=f"project {project}")
    releases = Release.objects.filter(environment__project=project).select_related(
        "environment", "prompt_set", "version", "published_by"
    )
    if environment is not None:
        releases = releases.filter(environment=environment)
    if prompt_set is not None:
        releases = releases.filter(prompt_set=prompt_set)
    return releases.order_by("-id")


def release_get(*, actor: Actor, project: Project, release_id: Any) -> Release:
    require(actor, project.organisation, Capability.VIEW, what=f"project {project}")
    release = (
        Release.objects.filter(environment__project=project, pk=release_id)
        .select_related("environment", "prompt_set", "version", "published_by")
        .first()
    )
    if release is None:
        raise NotFound(f"{project} has no release {release_id}.")
    return release

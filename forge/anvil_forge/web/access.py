"""How a view finds the objects in its URL and what the signed-in user may do with them.

Only a member of the organisation finds it (or anything in it); everyone else gets 404. The selectors
of the prompts app do the scoping; this module adds the page-level conveniences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.http import Http404, HttpRequest

from anvil_forge.accounts.models import Membership, Organisation
from anvil_forge.accounts.permissions import capabilities
from anvil_forge.prompts import selectors
from anvil_forge.prompts.models import Project, PromptSet
from anvil_forge.web.context_processors import SESSION_ORGANISATION


def organisation_get(request: HttpRequest, slug: str) -> Organisation:
    """The organisation ``slug`` if the signed-in user is a member of it (remembered as the current one)."""
    membership = _membership(request.user, slug)
    if membership is None:
        raise Http404("No such organisation.")
    request.session[SESSION_ORGANISATION] = slug
    return membership.organisation


def _membership(user: AbstractBaseUser, slug: str) -> Membership | None:
    return Membership.objects.filter(user=user, organisation__slug=slug).select_related("organisation").first()


@dataclass
class Place:
    """The organisation, project and prompt set a page is about, and what the user may do there."""

    organisation: Organisation
    project: Project | None = None
    prompt_set: PromptSet | None = None
    caps: frozenset[str] = field(default_factory=frozenset)

    def context(self) -> dict:
        return {
            "organisation": self.organisation,
            "project": self.project,
            "prompt_set": self.prompt_set,
            "caps": self.caps,
        }


def place_get(request: HttpRequest, org: str, project: str | None = None, prompt_set: str | None = None) -> Place:
    organisation = organisation_get(request, org)
    place = Place(organisation=organisation, caps=frozenset(str(c) for c in capabilities(request.user, organisation)))
    if project is not None:
        place.project = selectors.project_get(actor=request.user, organisation_slug=org, project_slug=project)
    if prompt_set is not None and place.project is not None:
        place.prompt_set = selectors.prompt_set_get(actor=request.user, project=place.project, slug=prompt_set)
    return place

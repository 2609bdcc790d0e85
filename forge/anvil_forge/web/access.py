"""How a view finds the objects in its URL and what the signed-in user may do with them.

Only a member of the organisation finds it (or anything in it); everyone else gets 404. The selectors
of the prompts app do the scoping; this module adds the page-level conveniences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.http import Http404, HttpRequest

from anvil_forge.accounts.models import Membership, Organisation
from anvil_forge.accounts.permissions import ROLE_CAPABILITIES
from anvil_forge.prompts import selectors
from anvil_forge.prompts.models import Project, PromptSet
from anvil_forge.web.context_processors import SESSION_ORGANISATION, memberships_of


def organisation_get(request: HttpRequest, slug: str) -> Organisation:
    """The organisation ``slug`` if the signed-in user is a member of it (remembered as the current one)."""
    return _membership(request, slug).organisation


def _membership(request: HttpRequest, slug: str) -> Membership:
    membership = next((m for m in memberships_of(request) if m.organisation.slug == slug), None)
    if membership is None:
        raise Http404("No such organisation.")
    if request.session.get(SESSION_ORGANISATION) != slug:
        request.session[SESSION_ORGANISATION] = slug
    return membership


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
    membership = _membership(request, org)
    # What the page offers; every service checks again with permissions.require before acting.
    caps = frozenset(str(c) for c in ROLE_CAPABILITIES.get(membership.role, frozenset()))
    place = Place(organisation=membership.organisation, caps=caps)
    if project is not None:
        place.project = selectors.project_get(actor=request.user, organisation_slug=org, project_slug=project)
    if prompt_set is not None and place.project is not None:
        place.prompt_set = selectors.prompt_set_get(actor=request.user, project=place.project, slug=prompt_set)
    return place

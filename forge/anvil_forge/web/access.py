"""How a view finds the organisation in its URL: only a member finds it; everyone else gets 404."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.http import Http404, HttpRequest

from anvil_forge.accounts.models import Membership, Organisation
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

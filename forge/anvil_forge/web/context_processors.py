"""What every page's frame needs: the signed-in user's organisations, the current one, the nav section."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from anvil_forge.accounts.models import Membership

SESSION_ORGANISATION = "anvil_organisation"

# url_name prefix (web namespace) -> left navigation section
_SECTIONS = {"token": "tokens", "instance": "instances", "audit": "audit"}


def _section(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return ""
    if match.namespace == "peering":
        return "forges"
    if match.namespace != "web":
        return ""
    for prefix, section in _SECTIONS.items():
        if match.url_name and match.url_name.startswith(prefix):
            return section
    return "projects"


def memberships_of(request: HttpRequest) -> list[Membership]:
    """The signed-in user's memberships, read once per request (the frame and the views both need them)."""
    cached = getattr(request, "_anvil_memberships", None)
    if cached is None:
        cached = list(Membership.objects.filter(user=request.user).select_related("organisation"))
        request._anvil_memberships = cached
    return cached


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_organisations": [], "current_organisation": None, "current_role": "", "nav_section": ""}
    memberships = memberships_of(request)
    organisations = [m.organisation for m in memberships]
    match = getattr(request, "resolver_match", None)
    wanted = (match.kwargs.get("org") if match else None) or request.session.get(SESSION_ORGANISATION)
    current = next((m for m in memberships if m.organisation.slug == wanted), memberships[0] if memberships else None)
    return {
        "nav_organisations": organisations,
        "current_organisation": current.organisation if current else None,
        "current_role": current.get_role_display() if current else "",
        "nav_section": _section(request),
    }

"""What the page frame shows of a user's attention: unread notifications and the reviews waiting for them."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from anvil_forge.notifications import selectors
from anvil_forge.web.context_processors import SESSION_ORGANISATION, memberships_of


def attention(request: HttpRequest) -> dict[str, Any]:
    """``nav_unread`` and ``nav_reviews`` (the current organisation's count), read only when a template uses them."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_unread": 0, "nav_reviews": 0}

    def reviews() -> int:
        memberships = memberships_of(request)
        match = getattr(request, "resolver_match", None)
        wanted = (match.kwargs.get("org") if match else None) or request.session.get(SESSION_ORGANISATION)
        first = memberships[0] if memberships else None
        current = next((m for m in memberships if m.organisation.slug == wanted), first)
        if current is None:
            return 0
        return selectors.reviews_waiting_for(user=user, organisation=current.organisation, role=current.role).count()

    return {
        "nav_unread": SimpleLazyObject(lambda: selectors.unread_count(user=user)),
        "nav_reviews": SimpleLazyObject(reviews),
    }

"""What the page frame shows of a user's attention: unread notifications and the reviews waiting for them."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import SimpleLazyObject

from anvil_forge.notifications import selectors
from anvil_forge.web.context_processors import SESSION_ORGANISATION, memberships_of


def attention(request: HttpRequest) -> dict[str, Any]:
    """``nav_unread``, ``nav_reviews`` (the current organisation's count) and ``nav_reviews_url`` (the one waiting
    review itself when there is exactly one, else the inbox), read only when a template uses them."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_unread": 0, "nav_reviews": 0, "nav_reviews_url": ""}

    @cache
    def reviews() -> tuple[int, str]:
        memberships = memberships_of(request)
        match = getattr(request, "resolver_match", None)
        wanted = (match.kwargs.get("org") if match else None) or request.session.get(SESSION_ORGANISATION)
        first = memberships[0] if memberships else None
        current = next((m for m in memberships if m.organisation.slug == wanted), first)
        if current is None:
            return 0, ""
        organisation = current.organisation
        waiting = selectors.reviews_waiting_for(user=user, organisation=organisation, role=current.role)
        count = waiting.count()
        inbox = reverse("web:projects", args=[organisation.slug]) + "#reviews"
        if count != 1:
            return count, inbox
        only = waiting.first()
        if only is None:  # reviewed between the two reads
            return 0, inbox
        prompt_set = only.prompt_set
        return 1, reverse("web:set_review", args=[organisation.slug, prompt_set.project.slug, prompt_set.slug])

    return {
        "nav_unread": SimpleLazyObject(lambda: selectors.unread_count(user=user)),
        "nav_reviews": SimpleLazyObject(lambda: reviews()[0]),
        "nav_reviews_url": SimpleLazyObject(lambda: reviews()[1]),
    }

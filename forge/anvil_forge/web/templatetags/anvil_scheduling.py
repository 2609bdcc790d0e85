"""``{% scheduled_releases %}``: the set's scheduled releases, for the versions page."""

from __future__ import annotations

from typing import Any

from django import template

from anvil_forge.distribution.scheduling import is_late, scheduled_releases_for

register = template.Library()


@register.inclusion_tag("web/partials/scheduled_releases.html", takes_context=True)
def scheduled_releases(context: Any) -> dict[str, Any]:
    request = context["request"]
    rows = scheduled_releases_for(actor=request.user, prompt_set=context["prompt_set"])
    return {
        "rows": [(row, is_late(row)) for row in rows],
        "caps": context.get("caps", frozenset()),
        "organisation": context["organisation"],
        "project": context["project"],
        "prompt_set": context["prompt_set"],
        "csrf_token": context.get("csrf_token"),
    }

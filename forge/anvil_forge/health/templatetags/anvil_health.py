"""``{% release_signals release %}``: what the instances reported of a release, for its page."""

from __future__ import annotations

from typing import Any

from django import template

from anvil_forge.health.selectors import release_health, release_warnings

register = template.Library()


@register.inclusion_tag("health/release_signals.html")
def release_signals(release: Any) -> dict[str, Any]:
    figures = release_health(release).canary
    return {"warnings": release_warnings(release), "figures": figures}

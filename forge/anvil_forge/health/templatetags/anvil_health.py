"""``{% release_signals release %}``: what the instances reported of a release, for its page, with what the
canary instances of the rollouts started from it reported of their (newer) version; ``{% rollout_signals rollout
%}``: what the canary instances reported of a rollout's version, for the rollout page."""

from __future__ import annotations

from typing import Any

from django import template

from anvil_forge.distribution.rollout_models import Rollout
from anvil_forge.health.selectors import release_health, release_warnings, version_health, version_warnings

register = template.Library()

# The rollouts started from a release whose canaries the release page reports on (the newest first).
RELEASE_PAGE_ROLLOUTS = 5


def canary_report(rollout: Rollout) -> dict[str, Any]:
    """``{"rollout", "warnings", "figures"}``: what the canary instances of ``rollout`` reported of its version
    (every stage; the warnings name prompts and problems as the release page does)."""
    chosen = list(rollout.chosen)
    figures = version_health(environment_id=rollout.environment_id, version_id=rollout.version_id, canary=chosen).canary
    warnings = version_warnings(environment_id=rollout.environment_id, version_id=rollout.version_id, instances=chosen)
    return {"rollout": rollout, "warnings": warnings, "figures": figures}


@register.inclusion_tag("health/release_signals.html")
def release_signals(release: Any) -> dict[str, Any]:
    figures = release_health(release).canary
    rollouts = (
        Rollout.objects.filter(previous_release=release)
        .select_related("version", "prompt_set", "environment")
        .order_by("-id")[:RELEASE_PAGE_ROLLOUTS]
    )
    canaries = [report for report in (canary_report(rollout) for rollout in rollouts) if report["warnings"]]
    return {"warnings": release_warnings(release), "figures": figures, "canaries": canaries}


@register.inclusion_tag("health/rollout_signals.html")
def rollout_signals(rollout: Any) -> dict[str, Any]:
    return canary_report(rollout)

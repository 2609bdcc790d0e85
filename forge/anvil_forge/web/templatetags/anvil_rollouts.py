"""``{% publish_rollout %}`` (the canary form on the publish page) and ``{% set_rollouts %}`` (the set's rollouts,
on the versions page)."""

from __future__ import annotations

from typing import Any

from django import template

from anvil_forge.distribution import rollouts

register = template.Library()


def _place(context: Any) -> dict[str, Any]:
    return {
        "caps": context.get("caps", frozenset()),
        "organisation": context["organisation"],
        "project": context["project"],
        "prompt_set": context["prompt_set"],
        "csrf_token": context.get("csrf_token"),
    }


@register.inclusion_tag("web/partials/publish_rollout.html", takes_context=True)
def publish_rollout(context: Any) -> dict[str, Any]:
    offer = None
    if "publish" in context.get("caps", frozenset()):
        offer = rollouts.project_defaults(project=context["project"])
    return {
        **_place(context),
        "version": context["version"],
        "environment": context["environment"],
        "rollout_offer": offer,
    }


@register.inclusion_tag("web/partials/set_rollouts.html", takes_context=True)
def set_rollouts(context: Any) -> dict[str, Any]:
    return {**_place(context), "rows": rollouts.rollouts_of(prompt_set=context["prompt_set"], limit=10)}


@register.inclusion_tag("web/partials/set_rollouts.html", takes_context=True)
def release_rollouts(context: Any, release: Any) -> dict[str, Any]:
    """The rollouts that started from ``release`` (a canary of a newer version), for its page."""
    rows = [r for r in rollouts.rollouts_of(prompt_set=context["prompt_set"]) if r.previous_release_id == release.pk]
    return {**_place(context), "rows": rows}


@register.inclusion_tag("web/partials/rollout_settings.html", takes_context=True)
def rollout_settings(context: Any) -> dict[str, Any]:
    """The project's rollout defaults, editable by those who manage the project (its settings page)."""
    return {**_place(context), "defaults": rollouts.project_defaults(project=context["project"])}

"""Canary rollouts on the pages (issue 16): start one from the publish page, follow it on its page (stages, the
instances on each version, both error rates, updated live), and promote, pause, resume or abort it by hand."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.distribution import rollouts
from anvil_forge.prompts import selectors
from anvil_forge.web.access import place_get

ACTIONS = ("promote", "pause", "resume", "abort")


def _number(value: str | None, field: str, kind: type[int] | type[float]) -> int | float | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        raise ApplicationError(f"{field}: {value[:20]!r} is not a number.", {"field": field}) from None


@login_required
@require_POST
def rollout_start(
    request: HttpRequest, org: str, project: str, prompt_set: str, number: int, environment: str
) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    version = selectors.version_get(actor=request.user, prompt_set=place.prompt_set, number=number)
    target = selectors.environment_get(actor=request.user, project=place.project, slug=environment)
    try:
        rollout = rollouts.rollout_start(
            actor=request.user,
            version=version,
            environment=target,
            stages=request.POST.get("stages") or None,
            threshold=_number(request.POST.get("threshold"), "threshold", float),
            min_renders=_number(request.POST.get("min_renders"), "min_renders", int),
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("web:publish", org, project, prompt_set, number, environment)
    messages.success(
        request,
        f"Version {version.number} is rolling out to {rollout.percent:g}% of {target.slug} "
        f"({len(rollout.chosen)} instance(s)).",
    )
    return redirect("web:rollout", org, project, prompt_set, rollout.pk)


def _context(request: HttpRequest, org: str, project: str, prompt_set: str, rollout_id: int) -> dict:
    place = place_get(request, org, project, prompt_set)
    rollout = rollouts.rollout_get(prompt_set=place.prompt_set, rollout_id=rollout_id)
    return {**place.context(), "view": rollouts.rollout_view(rollout=rollout), "rollout": rollout}


@login_required
def rollout_detail(request: HttpRequest, org: str, project: str, prompt_set: str, rollout_id: int) -> HttpResponse:
    return render(request, "web/rollout.html", _context(request, org, project, prompt_set, rollout_id))


@login_required
def rollout_body(request: HttpRequest, org: str, project: str, prompt_set: str, rollout_id: int) -> HttpResponse:
    """htmx, every few seconds while the rollout is active: the stages, instances and rates."""
    return render(request, "web/partials/rollout_body.html", _context(request, org, project, prompt_set, rollout_id))


@login_required
@require_POST
def rollout_action(
    request: HttpRequest, org: str, project: str, prompt_set: str, rollout_id: int, action: str
) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    rollout = rollouts.rollout_get(prompt_set=place.prompt_set, rollout_id=rollout_id)
    reason = (request.POST.get("reason") or "").strip()[:2000]
    try:
        if action == "promote":
            rollout = rollouts.rollout_promote(actor=request.user, rollout=rollout, reason=reason)
        elif action == "pause":
            rollout = rollouts.rollout_pause(actor=request.user, rollout=rollout, reason=reason)
        elif action == "resume":
            rollout = rollouts.rollout_resume(actor=request.user, rollout=rollout)
        elif action == "abort":
            rollout = rollouts.rollout_abort(actor=request.user, rollout=rollout, reason=reason or "aborted by hand")
        else:
            raise ApplicationError(f"action: {action[:20]!r} is not one of {', '.join(ACTIONS)}.", {"field": "action"})
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Rollout {rollout.pk}: {action} done; it is {rollout.state}.")
    return redirect("web:rollout", org, project, prompt_set, rollout_id)


@login_required
@require_POST
def rollout_settings(request: HttpRequest, org: str, project: str) -> HttpResponse:
    """The project's defaults for new rollouts (its settings page)."""
    place = place_get(request, org, project)
    try:
        rollouts.rollout_settings_update(
            actor=request.user,
            project=place.project,
            stages=request.POST.get("stages", ""),
            threshold=_number(request.POST.get("threshold"), "threshold", float) or 0.0,
            min_renders=int(_number(request.POST.get("min_renders"), "min_renders", int) or 0),
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Saved the rollout defaults.")
    if "manage_project" in place.caps:
        return redirect("web:project_settings", org, project)
    return redirect("web:project", org, project)

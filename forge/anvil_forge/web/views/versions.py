"""Versions: the list, the side-by-side diff, rollback, publishing and the live acknowledgements."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from anvil_forge.core.exceptions import ApplicationError, NotFound
from anvil_forge.distribution.models import Release
from anvil_forge.distribution.selectors import (
    acknowledgements_for,
    distribution_state,
    instance_states,
    instances_for,
    publish_warnings,
)
from anvil_forge.prompts import selectors, services
from anvil_forge.prompts.models import VersionState
from anvil_forge.prompts.rollback import approval_of, rollback_environment, rollback_refusal, rollback_targets
from anvil_forge.web.access import Place, place_get
from anvil_forge.web.diffing import snapshot_diff


@login_required
def version_list(request: HttpRequest, org: str, project: str, prompt_set: str) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    return _version_page(request, place)


def _version_page(request: HttpRequest, place: Place, *, status: int = 200, error: str = "") -> HttpResponse:
    versions = list(selectors.versions_for(actor=request.user, prompt_set=place.prompt_set))
    # One read of the distribution state gives the environments, what is live in each, and who runs what.
    states = [
        state
        for state in distribution_state(actor=request.user, project=place.project)
        if state.prompt_set.pk == place.prompt_set.pk
    ]
    environments = [state.environment for state in states]
    live: dict[int, list] = {}
    running: dict[int, list[tuple[str, int]]] = {}
    for state in states:
        if state.version is not None:
            live.setdefault(state.version, []).append(state.environment)
        for number, count in sorted(state.versions.items()):
            running.setdefault(number, []).append((state.environment.slug, count))
    newest = versions[0].number if versions else 0
    live_numbers = {env.pk: n for n, envs in live.items() for env in envs}
    rollback_to: dict[int, list] = {}
    if "publish" in place.caps:
        for environment in environments:
            for target in rollback_targets(prompt_set=place.prompt_set, environment=environment):
                rollback_to.setdefault(target.number, []).append(environment)
    rows = []
    for version in versions:
        targets = []
        for environment in environments:
            current = live_numbers.get(environment.pk)
            publishable = (
                version.state == VersionState.APPROVED
                or (version.state == VersionState.IN_REVIEW and environment.accepts_review_versions)
            ) and (current is None or current < version.number)
            if publishable:
                targets.append(environment)
        rows.append(
            {
                "version": version,
                "live_in": live.get(version.number, []),
                "running": running.get(version.number, []),
                "publish_to": targets,
                "approval": approval_of(version),
                "rollback_to": rollback_to.get(version.number, []),
            }
        )
    return render(
        request,
        "web/versions.html",
        {**place.context(), "rows": rows, "error": error, "newest": newest},
        status=status,
    )


@login_required
def version_detail(request: HttpRequest, org: str, project: str, prompt_set: str, number: int) -> HttpResponse:
    """One version's prompts as they were snapshotted (templates, parameters, metadata)."""
    place = place_get(request, org, project, prompt_set)
    version = selectors.version_get(actor=request.user, prompt_set=place.prompt_set, number=number)
    return render(
        request,
        "web/version.html",
        {
            **place.context(),
            "version": version,
            "approval": approval_of(version),
            "prompts": version.snapshot.get("prompts", []),
            "crumb": f"Version {version.number}",
        },
    )


@login_required
def version_diff(request: HttpRequest, org: str, project: str, prompt_set: str) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    versions = list(selectors.versions_for(actor=request.user, prompt_set=place.prompt_set))
    numbers = [v.number for v in versions]
    a = _number(request.GET.get("a"), default=numbers[1] if len(numbers) > 1 else (numbers[0] if numbers else 0))
    b = _number(request.GET.get("b"), default=numbers[0] if numbers else 0)
    old = selectors.version_get(actor=request.user, prompt_set=place.prompt_set, number=a) if a else None
    new = selectors.version_get(actor=request.user, prompt_set=place.prompt_set, number=b) if b else None
    if new is None:
        raise NotFound(f"{place.prompt_set.slug} has no versions yet.")
    return render(
        request,
        "web/diff.html",
        {
            **place.context(),
            "old": old,
            "new": new,
            "diff": snapshot_diff(old.snapshot if old else None, new.snapshot),
            "numbers": numbers,
        },
    )


@login_required
def version_rollback(
    request: HttpRequest, org: str, project: str, prompt_set: str, number: int, environment: str
) -> HttpResponse:
    """GET: the confirmation (the diff from what is live back to version ``number``). POST: make and publish."""
    place = place_get(request, org, project, prompt_set)
    version = selectors.version_get(actor=request.user, prompt_set=place.prompt_set, number=number)
    target = selectors.environment_get(actor=request.user, project=place.project, slug=environment)
    error, status = "", 200
    if request.method == "POST":
        try:
            release = rollback_environment(
                actor=request.user, prompt_set=place.prompt_set, number=version.number, environment=target
            )
        except ApplicationError as exc:
            error, status = exc.message, exc.status_code
        else:
            messages.success(
                request,
                f"Rolled {target.slug} back to version {number}'s content: made version {release.version.number} "
                f"and published it.",
            )
            return redirect("web:release", org, project, prompt_set, release.pk)
    current = selectors.current_release(environment=target, prompt_set=place.prompt_set)
    allowed = version.pk in {v.pk for v in rollback_targets(prompt_set=place.prompt_set, environment=target)}
    if not allowed and not error:
        error = rollback_refusal(place.prompt_set, version, target)  # said on the page; nothing was asked yet
    newest = selectors.versions_for(actor=request.user, prompt_set=place.prompt_set).first()
    return render(
        request,
        "web/rollback.html",
        {
            **place.context(),
            "version": version,
            "approval": approval_of(version),
            "environment": target,
            "current": current,
            "allowed": allowed,
            "next_number": (newest.number if newest else 0) + 1,
            "diff": snapshot_diff(current.version.snapshot if current else None, version.snapshot),
            "error": error,
        },
        status=status,
    )


@login_required
def version_publish(
    request: HttpRequest, org: str, project: str, prompt_set: str, number: int, environment: str
) -> HttpResponse:
    """GET: the confirmation (diff against what is live, who will take it, warnings). POST: publish."""
    place = place_get(request, org, project, prompt_set)
    version = selectors.version_get(actor=request.user, prompt_set=place.prompt_set, number=number)
    target = selectors.environment_get(actor=request.user, project=place.project, slug=environment)
    error, status = "", 200
    if request.method == "POST":
        try:
            release = services.version_publish(actor=request.user, version=version, environment=target)
        except ApplicationError as exc:
            error, status = exc.message, exc.status_code
        else:
            return redirect("web:release", org, project, prompt_set, release.pk)
    current = selectors.current_release(environment=target, prompt_set=place.prompt_set)
    slug = place.prompt_set.slug
    takers, refusers, offline = [], [], []
    for state in instance_states(instances_for(actor=request.user, project=place.project, environment=target)):
        standing = state.standing(slug, None)  # against no version: every accepting instance is "behind"
        if standing is None:
            continue
        if standing == "offline":
            offline.append(state)
        elif standing == "pinned":
            refusers.append((state, state.pinned_to(slug)))
        elif standing == "frozen":
            refusers.append((state, "FROZEN"))
        else:
            takers.append(state)
    return render(
        request,
        "web/publish.html",
        {
            **place.context(),
            "version": version,
            "environment": target,
            "current": current,
            "diff": snapshot_diff(current.version.snapshot if current else None, version.snapshot),
            "takers": takers,
            "refusers": refusers,
            "offline": offline,
            "warnings": publish_warnings(version=version, environment=target),
            "error": error,
        },
        status=status,
    )


def _release(request: HttpRequest, place: Place, release_id: int) -> Release:
    release = (
        Release.objects.filter(pk=release_id, prompt_set=place.prompt_set)
        .select_related("version", "environment", "published_by")
        .first()
    )
    if release is None:
        raise NotFound("No such release.")
    return release


def _ack_context(request: HttpRequest, place: Place, release: Release) -> dict:
    slug = place.prompt_set.slug
    acks = list(acknowledgements_for(release=release))
    acked = {event.data.get("instance_id") for event in acks}
    waiting, refusing, running, offline = [], [], [], []
    instances = instances_for(actor=request.user, project=place.project, environment=release.environment)
    for state in instance_states(instances):
        standing = state.standing(slug, release.version.number)
        if standing is None or state.instance.instance_id in acked:
            continue
        if standing == "offline":
            offline.append(state)
        elif standing == "pinned":
            refusing.append((state, state.pinned_to(slug)))
        elif standing == "frozen":
            refusing.append((state, "FROZEN"))
        elif standing == "running":
            running.append((state, state.versions_of(slug)))
        else:
            waiting.append((state, state.versions_of(slug)))
    return {
        **place.context(),
        "release": release,
        "acks": acks,
        "ack_count": len(acks) + len(running),
        "running": running,
        "waiting": waiting,
        "refusing": refusing,
        "offline": offline,
    }


@login_required
def release_detail(request: HttpRequest, org: str, project: str, prompt_set: str, release_id: int) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    release = _release(request, place, release_id)
    context = _ack_context(request, place, release)
    if "publish" in place.caps:
        # Offered from the newest release only: the version live here before it (when it is a target).
        targets = rollback_targets(prompt_set=place.prompt_set, environment=release.environment)
        current = selectors.current_release(environment=release.environment, prompt_set=place.prompt_set)
        if current is not None and current.pk == release.pk and targets:
            context["rollback_offer"] = targets[0]
    return render(request, "web/release.html", context)


@login_required
def release_acks(request: HttpRequest, org: str, project: str, prompt_set: str, release_id: int) -> HttpResponse:
    """htmx (polled every second): the instances that applied the release, and those still to."""
    place = place_get(request, org, project, prompt_set)
    release = _release(request, place, release_id)
    return render(request, "web/partials/acks.html", _ack_context(request, place, release))


def _number(value: str | None, *, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default

"""The prompt set page (prompts with search, adding prompts) and the review workflow with its review page."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from anvil_forge.audit.selectors import audit_events_for
from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.distribution.selectors import distribution_state
from anvil_forge.notifications.services import last_visit_record
from anvil_forge.prompts import selectors, services
from anvil_forge.prompts.models import PRODUCTION, Environment, SetStatus, VersionState
from anvil_forge.prompts.samples import failing_samples
from anvil_forge.web.access import Place, place_get
from anvil_forge.web.diffing import snapshot_diff
from anvil_forge.web.views.versions import publish_targets

HISTORY_LENGTH = 25
PROMPT_PAGE_SIZE = 100


def _set_page(request: HttpRequest, place: Place, *, status: int = 200, **extra: Any) -> HttpResponse:
    prompt_set = place.prompt_set
    search = request.GET.get("q", "").strip()
    prompts = selectors.prompts_for(actor=request.user, prompt_set=prompt_set, search=search)
    page = Paginator(prompts, PROMPT_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {**place.context(), "prompts": page.object_list, "page": page, "search": search}
    # htmx: the search wants the rows; the pushed refresh of the review section (#set-workflow) takes the page.
    refresh = request.headers.get("HX-Target") == "set-workflow"
    if request.headers.get("HX-Request") and request.method == "GET" and not refresh:
        return render(request, "web/partials/prompt_rows.html", context)
    versions = list(selectors.versions_for(actor=request.user, prompt_set=prompt_set)[:1])
    latest = versions[0] if versions else None
    in_review = latest if latest and latest.state == VersionState.IN_REVIEW else None
    history = audit_events_for(actor=request.user, project=place.project).filter(data__set=prompt_set.slug)
    publish_to = []
    if latest is not None and latest.state == VersionState.APPROVED and "publish" in place.caps:
        # Publishing the approved version is the next step: offer it here rather than a page further on.
        states = distribution_state(actor=request.user, project=place.project, prompt_set=prompt_set)
        live_numbers = {state.environment.pk: state.version for state in states if state.version is not None}
        publish_to = publish_targets(latest, [state.environment for state in states], live_numbers)
    context.update(
        {
            "latest": latest,
            "in_review": in_review,
            # The test cases run at submit, recorded with the version: pass/fail per prompt and sample.
            "test_results": (in_review.snapshot.get("test_results") if in_review else None),
            "tests_failing": failing_samples(in_review.snapshot.get("test_results")) if in_review else [],
            "override": False,
            "history": history[:HISTORY_LENGTH],
            "is_live": prompt_set.status == SetStatus.LIVE,
            "publish_to": publish_to,
            "own_version": _own_version(request, place, in_review),
            "new_key": "",
            "comment": "",
            **extra,
        }
    )
    return render(request, "web/set.html", context, status=status)


@login_required
def set_detail(request: HttpRequest, org: str, project: str, prompt_set: str) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    if not request.headers.get("HX-Request"):
        last_visit_record(user=request.user, project=place.project, prompt_set=place.prompt_set)
    return _set_page(request, place)


@login_required
@require_POST
def prompt_add(request: HttpRequest, org: str, project: str, prompt_set: str) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    key = request.POST.get("key", "").strip()
    try:
        prompt = services.prompt_create(
            actor=request.user,
            prompt_set=place.prompt_set,
            key=key,
            template=request.POST.get("template", ""),
            description=request.POST.get("description", ""),
        )
    except ApplicationError as exc:
        return _set_page(request, place, status=exc.status_code, add_error=exc.message, new_key=key)
    messages.success(request, f"Added {prompt.key}.")
    return redirect("web:prompt", org, project, prompt_set, prompt.key)


@login_required
@require_POST
def set_submit(request: HttpRequest, org: str, project: str, prompt_set: str) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    try:
        version = services.prompt_set_submit(
            actor=request.user, prompt_set=place.prompt_set, base_revision=_int(request.POST.get("base_revision"))
        )
    except ApplicationError as exc:
        return _set_page(request, place, status=exc.status_code, workflow_error=exc.message)
    results = version.snapshot.get("test_results")
    failing = failing_samples(results)
    tested = f" Test cases: {results['passed']} pass, {len(failing)} fail." if results else ""
    messages.success(request, f"Submitted for review as version {version.number}.{tested}")
    return redirect("web:set", org, project, prompt_set)


@login_required
def set_review(request: HttpRequest, org: str, project: str, prompt_set: str) -> HttpResponse:
    """GET: the review page of the version in review (the diff against production by default, or against the
    previous version with ``?against=previous``; the prompts that changed; the test results; approve or request
    changes beside it). POST: approve or request changes (``decision`` = approve | changes)."""
    place = place_get(request, org, project, prompt_set)
    if request.method != "POST":
        return _review_page(request, place)
    comment = request.POST.get("comment", "")
    decision = request.POST.get("decision")
    try:
        version = selectors.version_get(
            actor=request.user, prompt_set=place.prompt_set, number=_int(request.POST.get("version")) or 0
        )
        if decision == "approve":
            services.version_approve(
                actor=request.user, version=version, comment=comment, override=bool(request.POST.get("override"))
            )
            messages.success(request, f"Approved version {version.number}: it is ready to publish.")
        elif decision == "changes":
            services.version_request_changes(actor=request.user, version=version, comment=comment)
            messages.success(
                request, f"Requested changes on version {version.number}; the set is back to LIVE · editing."
            )
        else:
            raise ApplicationError("Choose approve or request changes.")
    except ApplicationError as exc:
        return _review_page(request, place, status=exc.status_code, review_error=exc.message, comment=comment,
                            override=bool(request.POST.get("override")))
    return redirect("web:set", org, project, prompt_set)


def _review_page(request: HttpRequest, place: Place, *, status: int = 200, **extra: Any) -> HttpResponse:
    prompt_set = place.prompt_set
    versions = list(selectors.versions_for(actor=request.user, prompt_set=prompt_set)[:1])
    latest = versions[0] if versions else None
    in_review = latest if latest and latest.state == VersionState.IN_REVIEW else None
    against = "previous" if request.GET.get("against") == "previous" else "production"
    environment = _production_of(list(selectors.environments_for(actor=request.user, project=place.project)))
    release = (
        selectors.current_release(environment=environment, prompt_set=prompt_set) if environment is not None else None
    )
    base = None
    if in_review is not None:
        if against == "previous":
            base = next(iter(selectors.versions_for(actor=request.user, prompt_set=prompt_set).filter(
                number__lt=in_review.number)[:1]), None)
        else:
            base = release.version if release is not None else None
    diff = snapshot_diff(base.snapshot if base else None, in_review.snapshot) if in_review else None
    context = {
        **place.context(),
        "in_review": in_review,
        "latest": latest,
        "against": against,
        "environment": environment,
        "live_release": release,
        "base": base,
        "diff": diff,
        "old_label": f"v{base.number}" if base else "nothing",
        "new_label": f"v{in_review.number}" if in_review else "",
        "test_results": in_review.snapshot.get("test_results") if in_review else None,
        "tests_failing": failing_samples(in_review.snapshot.get("test_results")) if in_review else [],
        "override": False,
        "comment": "",
        "own_version": _own_version(request, place, in_review),
        "crumb": "Review",
        **extra,
    }
    return render(request, "web/review.html", context, status=status)


def _own_version(request: HttpRequest, place: Place, version: Any) -> bool:
    """Whether the user submitted ``version`` in a project that asks for four eyes (they may not approve it)."""
    return bool(version and place.project.require_four_eyes and version.created_by_id == request.user.pk)


def _production_of(environments: list[Environment]) -> Environment | None:
    """The environment a review compares with: the one named production; else the first that takes only approved
    versions (the most protected); else the first."""
    return (
        next((e for e in environments if e.slug == PRODUCTION), None)
        or next((e for e in environments if not e.accepts_review_versions), None)
        or (environments[0] if environments else None)
    )


@login_required
@require_POST
def set_reopen(request: HttpRequest, org: str, project: str, prompt_set: str) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    try:
        services.prompt_set_reopen(actor=request.user, prompt_set=place.prompt_set)
    except ApplicationError as exc:
        return _set_page(request, place, status=exc.status_code, workflow_error=exc.message)
    messages.success(
        request, "Reopened: the set is LIVE · editing again (production changes only when a new version is published)."
    )
    return redirect("web:set", org, project, prompt_set)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None

"""Organisation-wide pages: the projects list, LIVE instances, and the audit log."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from anvil_forge.audit.selectors import audit_events_for
from anvil_forge.distribution.selectors import instance_states, instances_for
from anvil_forge.prompts import selectors
from anvil_forge.web.access import place_get

AUDIT_PAGE_SIZE = 50


@login_required
def projects(request: HttpRequest, org: str) -> HttpResponse:
    place = place_get(request, org)
    project_list = selectors.projects_for(actor=request.user, organisation=place.organisation).prefetch_related(
        "prompt_sets", "environments"
    )
    return render(request, "web/projects.html", {**place.context(), "projects": project_list})


@login_required
def instances(request: HttpRequest, org: str) -> HttpResponse:
    place = place_get(request, org)
    projects = list(selectors.projects_for(actor=request.user, organisation=place.organisation))
    project_slug = request.GET.get("project", "")
    chosen = next((p for p in projects if p.slug == project_slug), None)
    now = timezone.now()
    rows = instances_for(actor=request.user, organisation=place.organisation, project=chosen, now=now)
    return render(
        request,
        "web/instances.html",
        {
            **place.context(),
            "instances": instance_states(rows, now=now),
            "projects": projects,
            "project_slug": chosen.slug if chosen else "",
        },
    )


def _moment(text: str, *, end_of_day: bool = False) -> datetime | None:
    moment = parse_datetime(text)
    if moment is None:
        try:
            day = parse_date(text)
        except ValueError:
            return None
        if day is None:
            return None
        moment = datetime.combine(day, datetime.min.time()) + (timedelta(days=1) if end_of_day else timedelta())
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_current_timezone())
    return moment


@login_required
def audit(request: HttpRequest, org: str) -> HttpResponse:
    place = place_get(request, org)
    projects = list(selectors.projects_for(actor=request.user, organisation=place.organisation))
    filters = {key: request.GET.get(key, "").strip() for key in ("project", "actor", "action", "since", "until")}
    errors = []
    chosen = next((p for p in projects if p.slug == filters["project"]), None)
    if filters["project"] and chosen is None:
        errors.append(f"There is no project “{filters['project']}” in {place.organisation.name}.")
    moments = {}
    for key, end in (("since", False), ("until", True)):
        if filters[key]:
            moments[key] = _moment(filters[key], end_of_day=end)
            if moments[key] is None:
                errors.append(f"“{filters[key]}” is not a date (use YYYY-MM-DD or YYYY-MM-DD HH:MM).")
    action = filters["action"]
    events = audit_events_for(
        actor=request.user,
        organisation=place.organisation,
        project=chosen,
        actor_username=filters["actor"] or None,
        # A word without a dot ("release") matches every action of that kind.
        action=(action if "." in action else action + ".") if action else None,
        since=moments.get("since"),
        until=moments.get("until"),
    )
    if errors:
        events = events.none()
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    everything = audit_events_for(actor=request.user, organisation=place.organisation).order_by()
    kinds = sorted({action.split(".")[0] for action in everything.values_list("action", flat=True).distinct()})
    return render(
        request,
        "web/audit.html",
        {
            **place.context(),
            "page": page,
            "filters": filters,
            "errors": errors,
            "projects": projects,
            "action_kinds": kinds,
            "actors": sorted(set(everything.values_list("actor_label", flat=True).distinct())),
        },
    )

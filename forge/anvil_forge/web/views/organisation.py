"""Organisation-wide pages: the projects list, LIVE instances, and the audit log."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from anvil_forge.audit.models import AuditEvent
from anvil_forge.distribution.models import LiveInstance
from anvil_forge.prompts.models import Project
from anvil_forge.web.access import organisation_get


@login_required
def projects(request: HttpRequest, org: str) -> HttpResponse:
    organisation = organisation_get(request, org)
    project_list = (
        Project.objects.filter(organisation=organisation)
        .prefetch_related("prompt_sets", "environments")
        .order_by("slug")
    )
    return render(request, "web/projects.html", {"organisation": organisation, "projects": project_list})


@login_required
def instances(request: HttpRequest, org: str) -> HttpResponse:
    organisation = organisation_get(request, org)
    rows = LiveInstance.objects.filter(project__organisation=organisation).select_related("project", "environment")
    project_slug = request.GET.get("project", "")
    if project_slug:
        rows = rows.filter(project__slug=project_slug)
    quiet_after = timezone.now() - timedelta(minutes=5)
    return render(
        request,
        "web/instances.html",
        {
            "organisation": organisation,
            "instances": rows.order_by("project__slug", "environment__id", "name"),
            "projects": Project.objects.filter(organisation=organisation),
            "project_slug": project_slug,
            "quiet_after": quiet_after,
        },
    )


def _moment(text: str, *, end_of_day: bool = False) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    moment = parse_datetime(text)
    if moment is None:
        day = parse_date(text)
        if day is None:
            return None
        moment = datetime.combine(day, datetime.min.time()) + (timedelta(days=1) if end_of_day else timedelta())
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_current_timezone())
    return moment


@login_required
def audit(request: HttpRequest, org: str) -> HttpResponse:
    organisation = organisation_get(request, org)
    events = AuditEvent.objects.filter(organisation=organisation).select_related("project")
    filters = {key: request.GET.get(key, "").strip() for key in ("project", "actor", "action", "since", "until")}
    errors = []
    if filters["project"]:
        events = events.filter(project__slug=filters["project"])
    if filters["actor"]:
        events = events.filter(actor_label=filters["actor"])
    if filters["action"]:
        events = events.filter(action__startswith=filters["action"])
    for key, end in (("since", False), ("until", True)):
        if filters[key]:
            moment = _moment(filters[key], end_of_day=end)
            if moment is None:
                errors.append(f"“{filters[key]}” is not a date (use YYYY-MM-DD or YYYY-MM-DD HH:MM).")
            elif key == "since":
                events = events.filter(created_at__gte=moment)
            else:
                events = events.filter(created_at__lt=moment)
    page = Paginator(events.order_by("-created_at", "-id"), 50).get_page(request.GET.get("page"))
    return render(
        request,
        "web/audit.html",
        {
            "organisation": organisation,
            "page": page,
            "filters": filters,
            "errors": errors,
            "projects": Project.objects.filter(organisation=organisation),
        },
    )

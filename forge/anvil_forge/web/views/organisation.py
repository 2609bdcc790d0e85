"""Organisation-wide pages: the projects list, LIVE instances, and the audit log."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from anvil_forge.audit.selectors import audit_events_for
from anvil_forge.distribution.selectors import instance_marks, instance_states, instances_for
from anvil_forge.notifications.selectors import reviews_waiting_for
from anvil_forge.prompts import selectors
from anvil_forge.prompts.models import Environment
from anvil_forge.web.access import place_get

AUDIT_PAGE_SIZE = 50
INSTANCE_PAGE_SIZE = 50
INSTANCE_STATES = {"live": "live", "offline": "offline", "frozen": "FROZEN", "pinned": "pinned"}
ACTOR_SUGGESTIONS = 100
REVIEW_INBOX_SIZE = 50


@login_required
def projects(request: HttpRequest, org: str) -> HttpResponse:
    place = place_get(request, org)
    project_list = selectors.projects_for(actor=request.user, organisation=place.organisation).prefetch_related(
        "prompt_sets", "environments"
    )
    # The reviews waiting for this user (none unless their role may approve): the landing page's inbox.
    reviews = reviews_waiting_for(user=request.user, organisation=place.organisation)
    return render(
        request,
        "web/projects.html",
        {**place.context(), "projects": project_list, "reviews": list(reviews[:REVIEW_INBOX_SIZE]),
         "reviews_count": reviews.count()},
    )


@login_required
def instances(request: HttpRequest, org: str) -> HttpResponse:
    """One page of the instances, filtered by project, environment, version, state and host; the counts per
    version of every instance the filters match on top. Filtering and counting read narrow rows; only the
    page's instances are loaded whole."""
    place = place_get(request, org)
    projects = list(selectors.projects_for(actor=request.user, organisation=place.organisation))
    filters = {key: request.GET.get(key, "").strip() for key in ("project", "environment", "version", "state", "host")}
    chosen = next((p for p in projects if p.slug == filters["project"]), None)
    environments = dict(
        Environment.objects.filter(project__in=[chosen] if chosen else projects).values_list("pk", "slug")
    )
    now = timezone.now()
    states = instance_marks(
        instances_for(actor=request.user, organisation=place.organisation, project=chosen, now=now), now=now
    )
    if filters["environment"]:
        states = [s for s in states if environments.get(s.environment_id) == filters["environment"]]
    if filters["version"]:
        wanted_set, _, wanted = filters["version"].rpartition(":")
        wanted = wanted.lstrip("v")
        states = [
            s
            for s in states
            if any(
                (not wanted_set or slug == wanted_set) and any(str(n) == wanted for n in numbers)
                for slug, numbers in s.versions.items()
            )
        ]
    state = filters["state"]
    if state == "live":
        states = [s for s in states if not s.offline]
    elif state == "offline":
        states = [s for s in states if s.offline]
    elif state == "frozen":
        states = [s for s in states if s.frozen]
    elif state == "pinned":
        states = [s for s in states if s.pinned]
    if filters["host"]:
        needle = filters["host"].lower()
        states = [s for s in states if needle in s.host.lower() or needle in s.name.lower()]
    # Marks whose instances report the same share their ``versions``: count each distinct one once, times its marks.
    shared: dict[int, list[Any]] = {}
    for s in states:
        entry = shared.get(id(s.versions))
        if entry is None:
            shared[id(s.versions)] = [s.versions, 1]
        else:
            entry[1] += 1
    version_counts: dict[tuple[str, int], int] = {}
    for versions, times in shared.values():
        for slug, numbers in versions.items():
            for number in numbers:
                version_counts[(slug, number)] = version_counts.get((slug, number), 0) + times
    page = Paginator(states, INSTANCE_PAGE_SIZE).get_page(request.GET.get("page"))
    pks = [s.pk for s in page.object_list]
    shown = instance_states(
        instances_for(actor=request.user, organisation=place.organisation, now=now).filter(pk__in=pks), now=now
    )
    return render(
        request,
        "web/instances.html",
        {
            **place.context(),
            "instances": shown,
            "page": page,
            "matched": len(states),
            "version_counts": sorted(version_counts.items(), key=lambda item: (item[0][0], -item[0][1])),
            "projects": projects,
            "environment_slugs": sorted(set(environments.values())),
            "states": INSTANCE_STATES,
            "filters": filters,
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
            # People only (instances and tokens act too: thousands of them), at most ACTOR_SUGGESTIONS: the users
            # with an event here, each found through the events' actor index (not a scan of every event).
            "actors": list(
                get_user_model()
                .objects.filter(Exists(everything.filter(actor=OuterRef("pk"))))
                .order_by("username")
                .values_list("username", flat=True)[:ACTOR_SUGGESTIONS]
            ),
        },
    )

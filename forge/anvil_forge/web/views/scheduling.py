"""Scheduled releases: "Publish at…" on the publish page, and Cancel on the versions page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.distribution.scheduling import release_schedule, scheduled_release_cancel, scheduled_release_get
from anvil_forge.prompts import selectors
from anvil_forge.web.access import place_get

MAX_OFFSET_MINUTES = 14 * 60  # the widest UTC offsets in use are -12:00 and +14:00


def form_time(value: str, offset: str) -> datetime:
    """The form's ``at`` (a ``datetime-local`` value, the viewer's wall-clock time) as an aware UTC datetime.

    ``offset`` is the viewer's UTC offset in minutes east of UTC at that time (``tz_offset``, filled in by
    ``anvil/scheduling.js``); without it (no JavaScript) the time is taken as UTC, as the form says.
    """
    value, offset = (value or "").strip(), (offset or "").strip()
    if not value:
        raise ApplicationError("at: choose a date and time to publish at.", {"field": "at"})
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ApplicationError(f"at: {value[:40]!r} is not a date and time.", {"field": "at"}) from None
    if when.tzinfo is None:
        minutes = 0
        if offset:
            try:
                minutes = int(offset)
            except ValueError:
                raise ApplicationError("tz_offset: not a number of minutes.", {"field": "tz_offset"}) from None
            if abs(minutes) > MAX_OFFSET_MINUTES:
                raise ApplicationError("tz_offset: not a UTC offset.", {"field": "tz_offset"})
        when = when.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    return when.astimezone(UTC)


@login_required
@require_POST
def schedule_create(
    request: HttpRequest, org: str, project: str, prompt_set: str, number: int, environment: str
) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    version = selectors.version_get(actor=request.user, prompt_set=place.prompt_set, number=number)
    target = selectors.environment_get(actor=request.user, project=place.project, slug=environment)
    at = form_time(request.POST.get("at", ""), request.POST.get("tz_offset", ""))
    try:
        scheduled = release_schedule(actor=request.user, version=version, environment=target, at=at)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("web:publish", org, project, prompt_set, number, environment)
    messages.success(
        request,
        f"Version {version.number} will be published to {target.slug} at {scheduled.at:%Y-%m-%d %H:%M} UTC.",
    )
    return redirect("web:versions", org, project, prompt_set)


@login_required
@require_POST
def schedule_cancel(request: HttpRequest, org: str, project: str, prompt_set: str, scheduled_id: int) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    scheduled = scheduled_release_get(actor=request.user, prompt_set=place.prompt_set, scheduled_id=scheduled_id)
    try:
        scheduled_release_cancel(actor=request.user, scheduled=scheduled)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"Cancelled the release of version {scheduled.version.number} to {scheduled.environment.slug}."
        )
    return redirect("web:versions", org, project, prompt_set)

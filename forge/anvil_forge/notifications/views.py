"""The signed-in user's notifications: the list, and marking them read."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from anvil_forge.notifications import selectors, services
from anvil_forge.notifications.models import NotificationKind

PAGE_SIZE = 50


@login_required
def notification_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(selectors.notifications_for(user=request.user), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "notifications/list.html",
        {"page": page, "notifications": page.object_list, "nav_section": "notifications"},
    )


@login_required
def notification_open(request: HttpRequest, notification_id: int) -> HttpResponse:
    """Follow one of the user's notifications to the page it is about, marking it read on the way."""
    notification = selectors.notification_get(user=request.user, notification_id=notification_id)
    services.notifications_mark_read(user=request.user, ids=[notification.pk])
    prompt_set = notification.version.prompt_set
    place = [notification.organisation.slug, prompt_set.project.slug, prompt_set.slug]
    return redirect("web:set_review" if notification.kind == NotificationKind.SUBMITTED else "web:set", *place)


@login_required
@require_POST
def notifications_read(request: HttpRequest) -> HttpResponse:
    count = services.notifications_mark_read(user=request.user)
    messages.success(request, f"Marked {count} notification{'s' if count != 1 else ''} read.")
    return redirect("notifications:list")

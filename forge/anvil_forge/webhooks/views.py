"""Webhook pages: list and create, one webhook (settings and its delivery log), new secret, delete, send again.

Views authorise (organisation membership here, the capability in the selectors and services), parse, call a
service or selector and render. An :class:`ApplicationError` on a form is shown on the page with the input kept.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from anvil_forge.accounts.models import Organisation
from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.prompts import selectors as prompt_selectors
from anvil_forge.prompts.models import Project
from anvil_forge.web.access import organisation_get
from anvil_forge.webhooks import selectors, services
from anvil_forge.webhooks.events import EVENTS
from anvil_forge.webhooks.models import PayloadFormat, Webhook


def _form(request: HttpRequest | None, webhook: Webhook | None = None) -> dict[str, Any]:
    """What the form shows: the POSTed input (kept on an error), else the webhook's settings, else defaults."""
    if request is not None and request.method == "POST":
        return {
            "name": request.POST.get("name", ""),
            "url": request.POST.get("url", ""),
            "events": request.POST.getlist("events"),
            "project": request.POST.get("project", ""),
            "payload_format": request.POST.get("payload_format", PayloadFormat.JSON),
            "active": request.POST.get("active") == "1",
        }
    if webhook is not None:
        return {
            "name": webhook.name,
            "url": webhook.url,
            "events": webhook.events,
            "project": webhook.project.slug if webhook.project else "",
            "payload_format": webhook.payload_format,
            "active": webhook.active,
        }
    return {"name": "", "url": "", "events": [], "project": "", "payload_format": PayloadFormat.JSON, "active": True}


def _project(request: HttpRequest, organisation: Organisation, slug: str) -> Project | None:
    if not slug:
        return None
    return prompt_selectors.project_get(actor=request.user, organisation_slug=organisation.slug, project_slug=slug)


def _context(request: HttpRequest, organisation: Organisation, form: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "organisation": organisation,
        "form": form,
        "events": list(EVENTS.values()),
        "formats": PayloadFormat.choices,
        "projects": list(prompt_selectors.projects_for(actor=request.user, organisation=organisation)),
        "nav_section": "webhooks",
        **extra,
    }


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def webhook_list(request: HttpRequest, org: str) -> HttpResponse:
    organisation = organisation_get(request, org)
    webhooks = list(selectors.webhooks_for(actor=request.user, organisation=organisation))
    form = _form(request)
    if request.method == "POST":
        try:
            webhook, secret = services.webhook_create(
                actor=request.user,
                organisation=organisation,
                name=form["name"],
                url=form["url"],
                events=form["events"],
                project=_project(request, organisation, form["project"]),
                payload_format=form["payload_format"],
            )
        except ApplicationError as exc:
            if exc.status_code in (403, 404):
                raise
            context = _context(request, organisation, form, webhooks=webhooks, error=exc.message)
            return render(request, "webhooks/webhook_list.html", context, status=400)
        context = _context(request, organisation, _form(None, webhook), webhook=webhook, secret=secret)
        context["deliveries"] = []
        return render(request, "webhooks/webhook_detail.html", context, status=201)
    return render(request, "webhooks/webhook_list.html", _context(request, organisation, form, webhooks=webhooks))


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def webhook_detail(request: HttpRequest, org: str, webhook_id: int) -> HttpResponse:
    organisation = organisation_get(request, org)
    webhook = selectors.webhook_get(actor=request.user, organisation=organisation, webhook_id=webhook_id)
    form = _form(request, webhook)
    error = None
    if request.method == "POST":
        try:
            services.webhook_update(
                actor=request.user,
                webhook=webhook,
                name=form["name"],
                url=form["url"],
                events=form["events"],
                project=_project(request, organisation, form["project"]),
                payload_format=form["payload_format"],
                active=form["active"],
            )
        except ApplicationError as exc:
            if exc.status_code in (403, 404):
                raise
            error = exc.message
        else:
            messages.success(request, f"Webhook {webhook.name} saved.")
            return redirect("webhooks:webhook_detail", org=organisation.slug, webhook_id=webhook.pk)
    deliveries = selectors.deliveries_for(actor=request.user, webhook=webhook)
    context = _context(request, organisation, form, webhook=webhook, deliveries=deliveries, error=error)
    return render(request, "webhooks/webhook_detail.html", context, status=400 if error else 200)


@login_required
@never_cache
@require_POST
def webhook_secret(request: HttpRequest, org: str, webhook_id: int) -> HttpResponse:
    organisation = organisation_get(request, org)
    webhook = selectors.webhook_get(actor=request.user, organisation=organisation, webhook_id=webhook_id)
    secret = services.webhook_secret_rotate(actor=request.user, webhook=webhook)
    deliveries = selectors.deliveries_for(actor=request.user, webhook=webhook)
    context = _context(
        request, organisation, _form(None, webhook), webhook=webhook, deliveries=deliveries,
        secret=secret,
    )
    return render(request, "webhooks/webhook_detail.html", context)


@login_required
@require_POST
def webhook_delete(request: HttpRequest, org: str, webhook_id: int) -> HttpResponse:
    organisation = organisation_get(request, org)
    webhook = selectors.webhook_get(actor=request.user, organisation=organisation, webhook_id=webhook_id)
    name = webhook.name
    services.webhook_delete(actor=request.user, webhook=webhook)
    messages.success(request, f"Webhook {name} deleted.")
    return redirect("webhooks:webhook_list", org=organisation.slug)


@login_required
@require_POST
def delivery_resend(request: HttpRequest, org: str, webhook_id: int, delivery_id: int) -> HttpResponse:
    organisation = organisation_get(request, org)
    webhook = selectors.webhook_get(actor=request.user, organisation=organisation, webhook_id=webhook_id)
    delivery = selectors.delivery_get(actor=request.user, webhook=webhook, delivery_id=delivery_id)
    services.delivery_resend(actor=request.user, delivery=delivery)
    messages.success(request, f"Delivery of {delivery.action} queued to be sent again.")
    return redirect("webhooks:webhook_detail", org=organisation.slug, webhook_id=webhook.pk)

"""Webhook reads, scoped by who asks: only owners and admins (``manage_webhooks``) of the organisation."""

from __future__ import annotations

from django.db.models import QuerySet

from anvil_forge.accounts.models import Organisation
from anvil_forge.accounts.permissions import Actor, Capability, require
from anvil_forge.core.exceptions import NotFound
from anvil_forge.webhooks.models import Delivery, Webhook


def webhooks_for(*, actor: Actor, organisation: Organisation) -> QuerySet[Webhook]:
    require(actor, organisation, Capability.MANAGE_WEBHOOKS, what=f"organisation {organisation.slug}")
    return Webhook.objects.filter(organisation=organisation).select_related("project")


def webhook_get(*, actor: Actor, organisation: Organisation, webhook_id: int) -> Webhook:
    webhook = webhooks_for(actor=actor, organisation=organisation).filter(pk=webhook_id).first()
    if webhook is None:
        raise NotFound("No such webhook.")
    return webhook


def deliveries_for(*, actor: Actor, webhook: Webhook, limit: int = 100) -> list[Delivery]:
    require(actor, webhook.organisation, Capability.MANAGE_WEBHOOKS, what=f"organisation {webhook.organisation.slug}")
    return list(Delivery.objects.filter(webhook=webhook).select_related("event")[:limit])


def delivery_get(*, actor: Actor, webhook: Webhook, delivery_id: int) -> Delivery:
    require(actor, webhook.organisation, Capability.MANAGE_WEBHOOKS, what=f"organisation {webhook.organisation.slug}")
    delivery = Delivery.objects.filter(webhook=webhook, pk=delivery_id).select_related("webhook").first()
    if delivery is None:
        raise NotFound("No such delivery.")
    return delivery

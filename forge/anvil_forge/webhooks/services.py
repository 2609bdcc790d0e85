"""Webhook writes (create, update, delete, new secret, send again), queueing deliveries for audit events, and
sending what is due.

Queueing happens inside ``audit.services.audit_record``: the :class:`Delivery` rows are written in the
transaction of the change, so a change that rolls back sends nothing and one that commits is never lost; the
drainer is woken after the commit (``transaction.on_commit``). Nothing is sent from inside the request.
"""

from __future__ import annotations

import json
import logging
import random
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from anvil_forge.accounts.models import Organisation
from anvil_forge.accounts.permissions import Actor, Capability, require
from anvil_forge.audit.models import AuditEvent
from anvil_forge.audit.services import audit_record
from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.peering.crypto import decrypt_token, encrypt_token
from anvil_forge.prompts.models import Project
from anvil_forge.webhooks import events as event_table
from anvil_forge.webhooks import sender, signing
from anvil_forge.webhooks.models import Delivery, DeliveryState, PayloadFormat, Webhook

logger = logging.getLogger("anvil_forge.webhooks")

MAX_BACKOFF_SECONDS = 3600.0
CLAIM_SECONDS = 120.0  # a claimed delivery is not due again for this long (a sender that died mid-send)
BATCH = 20


# -- managing webhooks ----------------------------------------------------------------------------------------


def _clean(*, name: str, url: str, events: list[str], payload_format: str) -> tuple[str, str, list[str], str]:
    name, url = name.strip(), url.strip()
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "Give the webhook a name."
    if len(url) > 2000 or (problem := sender.url_problem(url)):
        errors["url"] = f"The URL cannot be used: {problem if len(url) <= 2000 else 'it is too long'}."
    unknown = [e for e in events if e not in event_table.EVENTS]
    if unknown:
        errors["events"] = f"Unknown event {unknown[0]!r}."
    elif not events:
        errors["events"] = "Choose at least one event."
    if payload_format not in PayloadFormat.values:
        errors["payload_format"] = "Choose JSON or chat."
    if errors:
        raise ApplicationError(next(iter(errors.values())), {"fields": errors})
    ordered = [action for action in event_table.EVENTS if action in set(events)]
    return name[:200], url, ordered, payload_format


def _project_in(organisation: Organisation, project: Project | None) -> None:
    if project is not None and project.organisation_id != organisation.pk:
        raise ApplicationError("That project is not in this organisation.")


def webhook_create(
    *,
    actor: Actor,
    organisation: Organisation,
    name: str,
    url: str,
    events: list[str],
    project: Project | None = None,
    payload_format: str = PayloadFormat.JSON,
) -> tuple[Webhook, str]:
    """A new webhook and its signing secret (returned once; stored encrypted)."""
    require(actor, organisation, Capability.MANAGE_WEBHOOKS, what=f"organisation {organisation.slug}")
    _project_in(organisation, project)
    name, url, events, payload_format = _clean(name=name, url=url, events=events, payload_format=payload_format)
    secret = signing.new_secret()
    with transaction.atomic():
        webhook = Webhook.objects.create(
            organisation=organisation,
            project=project,
            name=name,
            url=url,
            events=events,
            payload_format=payload_format,
            secret_encrypted=encrypt_token(secret),
            created_by=actor if getattr(actor, "pk", None) else None,
        )
        audit_record(
            actor=actor, action="webhook.create", obj=webhook, organisation=organisation, project=project,
            data={"url": url, "events": events, "payload_format": payload_format},
        )
    return webhook, secret


def webhook_update(
    *,
    actor: Actor,
    webhook: Webhook,
    name: str,
    url: str,
    events: list[str],
    project: Project | None,
    payload_format: str,
    active: bool,
) -> Webhook:
    organisation = webhook.organisation
    require(actor, organisation, Capability.MANAGE_WEBHOOKS, what=f"organisation {organisation.slug}")
    _project_in(organisation, project)
    name, url, events, payload_format = _clean(name=name, url=url, events=events, payload_format=payload_format)
    with transaction.atomic():
        before = {"url": webhook.url, "events": webhook.events, "active": webhook.active}
        webhook.name, webhook.url, webhook.events = name, url, events
        webhook.project, webhook.payload_format, webhook.active = project, payload_format, active
        webhook.save()
        audit_record(
            actor=actor, action="webhook.update", obj=webhook, organisation=organisation, project=project,
            data={"before": before, "after": {"url": url, "events": events, "active": active}},
        )
    return webhook


def webhook_delete(*, actor: Actor, webhook: Webhook) -> None:
    organisation = webhook.organisation
    require(actor, organisation, Capability.MANAGE_WEBHOOKS, what=f"organisation {organisation.slug}")
    with transaction.atomic():
        audit_record(
            actor=actor, action="webhook.delete", obj=webhook, organisation=organisation, data={"url": webhook.url}
        )
        webhook.delete()


def webhook_secret_rotate(*, actor: Actor, webhook: Webhook) -> str:
    """A new signing secret (returned once); deliveries from now on are signed with it."""
    organisation = webhook.organisation
    require(actor, organisation, Capability.MANAGE_WEBHOOKS, what=f"organisation {organisation.slug}")
    secret = signing.new_secret()
    with transaction.atomic():
        webhook.secret_encrypted = encrypt_token(secret)
        webhook.save(update_fields=["secret_encrypted"])
        audit_record(actor=actor, action="webhook.secret_rotate", obj=webhook, organisation=organisation)
    return secret


def delivery_resend(*, actor: Actor, delivery: Delivery) -> Delivery:
    """Queue ``delivery`` again ("send again"): the same event and delivery id, due now, its retry window anew."""
    organisation = delivery.webhook.organisation
    require(actor, organisation, Capability.MANAGE_WEBHOOKS, what=f"organisation {organisation.slug}")
    with transaction.atomic():
        now = timezone.now()
        Delivery.objects.filter(pk=delivery.pk).update(
            state=DeliveryState.PENDING, next_attempt_at=now, created_at=now, attempts=0, last_error=""
        )
        audit_record(
            actor=actor, action="webhook.resend", obj=delivery.webhook, organisation=organisation,
            data={"delivery": str(delivery.uuid), "event": delivery.action},
        )
        transaction.on_commit(wake)
    delivery.refresh_from_db()
    return delivery


# -- queueing (called by audit_record) ------------------------------------------------------------------------


def deliveries_enqueue(event: AuditEvent) -> int:
    """Queue one delivery of ``event`` per active webhook of its organisation (and project) that wants it.

    Runs inside the caller's transaction (the audit event's); wakes the drainer after the commit.
    """
    if event.action not in event_table.EVENTS or event.organisation_id is None:
        return 0
    hooks = [
        hook
        for hook in Webhook.objects.filter(organisation_id=event.organisation_id, active=True).only(
            "pk", "project_id", "events"
        )
        if event.action in hook.events and (hook.project_id is None or hook.project_id == event.project_id)
    ]
    if not hooks:
        return 0
    now = timezone.now()
    Delivery.objects.bulk_create(
        [Delivery(webhook=hook, event=event, action=event.action, next_attempt_at=now) for hook in hooks]
    )
    transaction.on_commit(wake)
    return len(hooks)


def wake() -> None:
    from anvil_forge.webhooks import drain

    drain.wake()


# -- sending ---------------------------------------------------------------------------------------------------


def backoff_seconds(attempts: int) -> float:
    """The wait after the ``attempts``-th failure: base * 2^(attempts-1), at most an hour, ±10% jitter."""
    base = settings.ANVIL_WEBHOOK_RETRY_BASE_SECONDS * (2 ** max(attempts - 1, 0))
    return min(base, MAX_BACKOFF_SECONDS) * random.uniform(0.9, 1.1)


def deliveries_claim(*, limit: int = BATCH, now: datetime | None = None) -> list[int]:
    """Claim the due deliveries: move their next attempt past :data:`CLAIM_SECONDS` so no other sender takes them.

    On PostgreSQL the rows are locked with ``SKIP LOCKED``: two processes claiming at once get different rows,
    so one delivery is never sent twice. Each row is then taken with a conditional update (still due?), which
    alone keeps the promise where there is no ``SKIP LOCKED`` (SQLite, should it ever have several processes).
    """
    now = now or timezone.now()
    claimed: list[int] = []
    with transaction.atomic():
        due = Delivery.objects.filter(state=DeliveryState.PENDING, next_attempt_at__lte=now).order_by("next_attempt_at")
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        for delivery_id in list(due.values_list("pk", flat=True)[:limit]):
            taken = Delivery.objects.filter(
                pk=delivery_id, state=DeliveryState.PENDING, next_attempt_at__lte=now
            ).update(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))
            if taken:
                claimed.append(delivery_id)
    return claimed


def delivery_send(delivery_id: int) -> Delivery:
    """Send one claimed delivery and record what happened (delivered, retry later, or given up)."""
    from anvil_forge.core import metrics

    delivery = Delivery.objects.select_related(
        "webhook", "event", "event__organisation", "event__project"
    ).get(pk=delivery_id)
    webhook = delivery.webhook
    chat = webhook.payload_format == PayloadFormat.CHAT
    body = json.dumps(
        event_table.payload_for(delivery.event, chat=chat, delivery_id=str(delivery.uuid)),
        separators=(",", ":"), sort_keys=True,
    ).encode("utf-8")
    try:
        secret = decrypt_token(webhook.secret_encrypted, peer_name=webhook.name)
    except ApplicationError:
        outcome = sender.Outcome(None, "the secret cannot be decrypted (SECRET_KEY changed?): make a new secret")
    else:
        headers = {
            "Content-Type": "application/json",
            signing.HEADER: signing.sign(secret, body, int(time.time())),
            "Anvil-Event": delivery.action,
            "Anvil-Delivery": str(delivery.uuid),
        }
        outcome = sender.post(webhook.url, body, headers, timeout=settings.ANVIL_WEBHOOK_TIMEOUT_SECONDS)
    now = timezone.now()
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.response_code = outcome.status
    delivery.last_error = outcome.error[:300]
    if outcome.ok:
        delivery.state = DeliveryState.DELIVERED
        delivery.delivered_at = now
    else:
        retry_at = now + timedelta(seconds=backoff_seconds(delivery.attempts))
        if retry_at - delivery.created_at > timedelta(hours=settings.ANVIL_WEBHOOK_RETRY_HOURS):
            delivery.state = DeliveryState.FAILED
        else:
            delivery.next_attempt_at = retry_at
        logger.info("webhook %s: delivery %s %s", webhook.pk, delivery.uuid, outcome.error)
    delivery.save(
        update_fields=[
            "attempts", "last_attempt_at", "response_code", "last_error", "state", "delivered_at", "next_attempt_at"
        ]
    )
    metrics.webhook_delivery(ok=outcome.ok, gave_up=delivery.state == DeliveryState.FAILED)
    return delivery


def deliveries_send_due() -> int:
    """Claim and send what is due, batch after batch; how many were sent (successfully or not)."""
    sent = 0
    while ids := deliveries_claim():
        for delivery_id in ids:
            try:
                delivery_send(delivery_id)
            except Delivery.DoesNotExist:  # its webhook was deleted meanwhile
                continue
            sent += 1
    return sent


def describe(delivery: Delivery) -> dict[str, Any]:
    return {"id": str(delivery.uuid), "state": delivery.state, "response_code": delivery.response_code}

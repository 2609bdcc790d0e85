"""Webhooks of an organisation (optionally one project) and their queued deliveries.

A :class:`Delivery` row is written in the transaction of the audit event it reports (so it exists exactly
when the change committed) and is sent by the drainer (``webhooks.drain``) in the background.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class PayloadFormat(models.TextChoices):
    JSON = "json", "JSON (Anvil's event format)"
    CHAT = "chat", "Chat (JSON with a text field: Slack, Mattermost, Teams workflows)"


class Webhook(models.Model):
    organisation = models.ForeignKey("accounts.Organisation", on_delete=models.CASCADE, related_name="webhooks")
    project = models.ForeignKey(
        "prompts.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="webhooks"
    )  # None: every project of the organisation
    name = models.CharField(max_length=200)
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list)  # audit actions (webhooks.events.EVENTS)
    payload_format = models.CharField(max_length=8, choices=PayloadFormat.choices, default=PayloadFormat.JSON)
    secret_encrypted = models.TextField()  # peering.crypto (Fernet under a key derived from SECRET_KEY)
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "pk"]
        indexes = [models.Index(fields=["organisation", "active"])]

    def __str__(self) -> str:
        return self.name


class DeliveryState(models.TextChoices):
    PENDING = "pending", "pending"
    DELIVERED = "delivered", "delivered"
    FAILED = "failed", "failed"  # gave up after the retry window


class Delivery(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey("audit.AuditEvent", on_delete=models.CASCADE, related_name="+")
    action = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    next_attempt_at = models.DateTimeField()  # also the claim: a sender moves it past its deadline while sending
    attempts = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["state", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.action} → {self.webhook}"


class ReleaseAcknowledged(models.Model):
    """The mark that ``release.acknowledged`` was recorded for a release (``webhooks.acknowledged``): its
    uniqueness is what makes the event fire once, whichever FORGE process recorded the last acknowledgement."""

    release = models.OneToOneField("distribution.Release", on_delete=models.CASCADE, related_name="+")
    acknowledged_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"release {self.release_id} acknowledged"

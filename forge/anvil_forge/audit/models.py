"""The append-only audit trail: who did what to which object, and when."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEventRefused(Exception):
    """Raised on any attempt to change or delete an audit event: the trail is append-only."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):  # type: ignore[no-untyped-def]
        raise AuditEventRefused("Audit events are append-only: they cannot be updated.")

    def delete(self):  # type: ignore[no-untyped-def]
        raise AuditEventRefused("Audit events are append-only: they cannot be deleted.")

    def bulk_update(self, objs, fields, batch_size=None):  # type: ignore[no-untyped-def]
        raise AuditEventRefused("Audit events are append-only: they cannot be updated.")

    def update_or_create(self, defaults=None, create_defaults=None, **kwargs):  # type: ignore[no-untyped-def]
        raise AuditEventRefused("Audit events are append-only: they cannot be updated.")


class AuditEvent(models.Model):
    organisation = models.ForeignKey(
        "accounts.Organisation", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    project = models.ForeignKey("prompts.Project", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Who acted, as text that survives the actor: a username, "token anvil_live_ab12…", "instance web-1".
    actor_label = models.CharField(max_length=200)
    action = models.CharField(max_length=64, db_index=True)  # e.g. "prompt_set.submit", "release.publish"
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=300)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organisation", "-created_at"]),
            # A project's newest events (the set page's history: a project, then its set's, newest first).
            models.Index(fields=["project", "-created_at", "-id"], name="audit_project_newest"),
            # Whether a person acted in an organisation (the audit page's actor suggestions).
            models.Index(fields=["actor", "organisation"], name="audit_actor_organisation"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.object_repr}"

    # Guards, not business logic: an existing row is never written again, and never removed.
    def save(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not self._state.adding:
            raise AuditEventRefused("Audit events are append-only: they cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise AuditEventRefused("Audit events are append-only: they cannot be deleted.")

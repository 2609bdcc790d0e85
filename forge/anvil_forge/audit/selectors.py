"""Reading the audit trail, scoped to the organisations the actor belongs to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from anvil_forge.accounts.models import Membership, Role
from anvil_forge.accounts.permissions import Actor
from anvil_forge.audit.models import AuditEvent


def audit_events_for(
    *,
    actor: Actor | None,
    project: Any = None,
    actor_username: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    organisation: Any = None,
) -> QuerySet[AuditEvent]:
    """The audit events ``actor`` may read, newest first, optionally filtered.

    Only events of organisations the actor is a member of (any role) are returned; filtering by a
    ``project`` or ``organisation`` of another organisation returns nothing. ``action`` matches exactly,
    or as a prefix when it ends with a dot (``"prompt."``). ``since`` is inclusive, ``until`` exclusive.
    """
    if actor is None or not getattr(actor, "is_authenticated", False) or getattr(actor, "pk", None) is None:
        return AuditEvent.objects.none()
    org_ids = Membership.objects.filter(user=actor, role__in=list(Role)).values("organisation_id")
    events = AuditEvent.objects.filter(organisation_id__in=org_ids).select_related("project", "organisation")
    if organisation is not None:
        events = events.filter(organisation=organisation)
    if project is not None:
        events = events.filter(project=project)
    if actor_username:
        events = events.filter(actor_label=actor_username)
    if action:
        events = events.filter(action__startswith=action) if action.endswith(".") else events.filter(action=action)
    if since is not None:
        events = events.filter(created_at__gte=since)
    if until is not None:
        events = events.filter(created_at__lt=until)
    return events.order_by("-created_at", "-id")

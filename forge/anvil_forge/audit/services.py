"""Writing the audit trail. Call :func:`audit_record` inside the transaction of the change it records."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import models, transaction

from anvil_forge.accounts.models import Organisation
from anvil_forge.accounts.permissions import Actor
from anvil_forge.audit.models import AuditEvent

_API_KEY: ContextVar[str | None] = ContextVar("anvil_audit_api_key", default=None)


@contextmanager
def audit_api_key(prefix: str) -> Iterator[None]:
    """Within this block (one management API request), every event a user records carries ``data["api_key"]``:
    the prefix of the key it acted with, so the trail says which key made each change."""
    token = _API_KEY.set(prefix)
    try:
        yield
    finally:
        _API_KEY.reset(token)


def audit_record(
    *,
    actor: Actor | None = None,
    actor_label: str | None = None,
    action: str,
    obj: models.Model | None,
    organisation: Organisation | None,
    project: Any = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event: ``actor`` (a user, a ``SystemActor`` or ``None``) did ``action`` to ``obj``.

    ``actor_label`` overrides the text kept for who acted (a token prefix, an instance name); by default it is
    the actor's username, or ``"system"``. ``data`` is any JSON-serialisable detail (old and new values...).
    Must run inside the caller's transaction so the change and its record commit or roll back together.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must be called inside the transaction of the change it records")
    user = actor if isinstance(actor, models.Model) else None
    if user is not None and (prefix := _API_KEY.get()) is not None and "api_key" not in (data or {}):
        data = {**(data or {}), "api_key": prefix}
    if actor_label is None:
        actor_label = actor.get_username() if actor is not None else "system"
    if obj is not None:
        object_type = obj._meta.label_lower
        object_id = str(obj.pk)
        object_repr = str(obj)[:300]
    else:
        object_type = object_id = object_repr = ""
    if project is not None:  # open pages of the project refresh after the commit (distribution.page_events)
        from anvil_forge.distribution.page_events import project_changed

        project_changed(getattr(project, "pk", project), action)
    event = AuditEvent.objects.create(
        organisation=organisation,
        project=project,
        actor=user,
        actor_label=actor_label[:200],
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr,
        data=data or {},
    )
    # Webhook deliveries are queued in this same transaction and sent after the commit (webhooks.services);
    # metrics (publish-to-acknowledgement times) are counted after the commit too (core.metrics).
    from anvil_forge.core.metrics import audit_event_recorded
    from anvil_forge.webhooks.services import deliveries_enqueue

    deliveries_enqueue(event)
    audit_event_recorded(event, obj)
    return event

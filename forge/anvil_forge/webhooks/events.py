"""The events a webhook can subscribe to: audit actions, with a label and a one-line chat text each.

A webhook event *is* an audit event (``audit.services.audit_record`` queues the deliveries in the same
transaction), so its name is the audit action. To offer a new event, add its audit action here: nothing else
changes (the form, the filter and the payload all read this table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class EventKind:
    action: str  # the audit action
    label: str  # shown in the form
    verb: str  # "{actor} {verb} {object}" in the chat text


EVENTS: dict[str, EventKind] = {
    kind.action: kind
    for kind in (
        EventKind("prompt_set.submit", "Submitted for review", "submitted for review"),
        EventKind("version.approve", "Approved", "approved"),
        EventKind("prompt_set.approve_override", "Approved (override)", "approved (override)"),
        EventKind("version.request_changes", "Changes requested", "requested changes to"),
        EventKind("release.publish", "Published", "published"),
        EventKind("version.rollback", "Rolled back", "rolled back"),
        EventKind("release.acknowledge", "Acknowledged by an instance", "acknowledged"),
        EventKind("release.acknowledged", "Acknowledged by every instance", "saw every instance apply"),
        EventKind("token.create", "Token created", "created the token"),
        EventKind("token.revoke", "Token revoked", "revoked the token"),
        EventKind("rollout.start", "Rollout started", "started the rollout"),
        EventKind("rollout.promote", "Rollout promoted", "promoted the rollout"),
        EventKind("rollout.halt", "Rollout halted", "halted the rollout"),
        EventKind("rollout.complete", "Rollout completed", "completed the rollout"),
    )
}


def chat_text(*, action: str, actor: str, organisation: str, project: str, object_repr: str) -> str:
    """One line a chat tool shows: ``acme/support-bot: ada published core v4 to production``."""
    kind = EVENTS.get(action)
    verb = kind.verb if kind else action
    where = f"{organisation}/{project}" if project else organisation
    return f"{where}: {actor} {verb} {object_repr}".strip()


def payload_for(event: Any, *, chat: bool, delivery_id: str) -> dict[str, Any]:
    """The JSON body sent for an audit event (``chat``: a ``text`` field for Slack-style incoming webhooks)."""
    organisation = event.organisation.slug if event.organisation_id else ""
    project = event.project.slug if event.project_id else ""
    body: dict[str, Any] = {
        "id": delivery_id,
        "event": event.action,
        "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
        "organisation": organisation,
        "project": project,
        "actor": event.actor_label,
        "object": {"type": event.object_type, "id": event.object_id, "repr": event.object_repr},
        "data": event.data,
    }
    if chat:
        body = {
            "text": chat_text(
                action=event.action,
                actor=event.actor_label,
                organisation=organisation,
                project=project,
                object_repr=event.object_repr,
            ),
            **body,
        }
    return body

"""Reads of the notifications app, each scoped by the user who asks."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.db.models.fields.json import KT
from django.urls import reverse

from anvil_forge.accounts.models import Membership, Organisation
from anvil_forge.accounts.permissions import ROLE_CAPABILITIES, Capability
from anvil_forge.core.exceptions import NotFound
from anvil_forge.notifications.models import LastVisit, Notification
from anvil_forge.prompts.models import Project, PromptSetVersion, VersionState


def reviews_waiting_for(
    *, user: Any, organisation: Organisation, role: str | None = None
) -> QuerySet[PromptSetVersion]:
    """The versions in review in ``organisation`` that ``user`` may approve, oldest first.

    Nothing unless the user's role there may review; without the versions the user submitted where the
    project asks for four eyes (they may not approve those); archived sets' versions are left out. Each row
    carries ``note`` (the author's note to reviewers, from the snapshot) and not the snapshot itself. ``role``:
    the user's role there when the caller has read it already.
    """
    role = role or Membership.objects.filter(user_id=getattr(user, "pk", None), organisation=organisation).values_list(
        "role", flat=True
    ).first()
    versions = PromptSetVersion.objects.filter(
        state=VersionState.IN_REVIEW,
        prompt_set__project__organisation=organisation,
        prompt_set__archived_at__isnull=True,
    )
    if role is None or Capability.REVIEW not in ROLE_CAPABILITIES.get(role, frozenset()):
        return versions.none()
    return (
        versions.exclude(prompt_set__project__require_four_eyes=True, created_by_id=user.pk)
        .select_related("prompt_set__project", "created_by")
        .defer("snapshot")
        .annotate(note=KT("snapshot__note"))
        .order_by("created_at", "pk")
    )


def notifications_for(*, user: Any) -> QuerySet[Notification]:
    """``user``'s notifications, newest first, from the organisations they are still a member of."""
    return (
        Notification.objects.filter(recipient_id=getattr(user, "pk", None), organisation__memberships__user_id=user.pk)
        .select_related("organisation", "version__prompt_set__project", "actor")
        .order_by("-created_at", "-pk")
    )


def notification_get(*, user: Any, notification_id: int) -> Notification:
    """One of ``user``'s notifications; :class:`NotFound` for anyone else's (or one whose organisation they left)."""
    notification = notifications_for(user=user).filter(pk=notification_id).first()
    if notification is None:
        raise NotFound("No such notification.")
    return notification


def unread_count(*, user: Any) -> int:
    return notifications_for(user=user).filter(read_at__isnull=True).count()


def landing_path(*, user: Any) -> str | None:
    """Where signing in lands ``user``: the set (or project) they last opened, in an organisation they are still a
    member of; else their only project when they have exactly one; else ``None`` (the projects list)."""
    organisations = Membership.objects.filter(user_id=getattr(user, "pk", None)).values("organisation_id")
    visit = (
        LastVisit.objects.filter(user_id=user.pk, organisation_id__in=organisations)
        .select_related("organisation", "project", "prompt_set")
        .order_by("-visited_at")
        .first()
    )
    if visit is not None:
        prompt_set, project = visit.prompt_set, visit.project
        if prompt_set is not None and prompt_set.archived_at is None and prompt_set.project_id == project.pk:
            return reverse("web:set", args=[visit.organisation.slug, project.slug, prompt_set.slug])
        return reverse("web:project", args=[visit.organisation.slug, project.slug])
    projects = list(Project.objects.filter(organisation_id__in=organisations).select_related("organisation")[:2])
    if len(projects) == 1:
        return reverse("web:project", args=[projects[0].organisation.slug, projects[0].slug])
    return None

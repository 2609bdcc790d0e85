"""Reads about members and invitations, scoped by who asks (anyone else gets NotFound)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone

from anvil_forge.accounts.models import Invitation, Membership, Organisation
from anvil_forge.accounts.permissions import Actor, Capability, require


def members_for(*, actor: Actor, organisation: Organisation) -> QuerySet[Membership]:
    """Everyone in ``organisation`` with their role, by username (any member may see them)."""
    require(actor, organisation, Capability.VIEW, what=f"organisation {organisation.slug}")
    return (
        Membership.objects.filter(organisation=organisation)
        .select_related("user", "organisation")
        .order_by("user__username")
    )


def invitations_pending_for(*, actor: Actor, organisation: Organisation) -> QuerySet[Invitation]:
    """Invitations not yet used, revoked or expired (for those who manage members), newest first."""
    require(actor, organisation, Capability.MANAGE_MEMBERS, what=f"organisation {organisation.slug}")
    return (
        Invitation.objects.filter(
            organisation=organisation,
            accepted_at__isnull=True,
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
        )
        .select_related("organisation", "created_by")
        .order_by("-created_at", "-id")
    )

"""What each role may do in an organisation, checked once here for the services and the UI.

``can(user, organisation, capability)`` answers yes or no (the UI uses it to hide actions);
``require(...)`` raises. Someone who is not a member of the organisation gets :class:`NotFound`, never
:class:`PermissionDenied`: another organisation's objects must not even be known to exist.

The ``anvil-forge`` command acts as a :class:`SystemActor` (the person at the server's console): it may do
everything, and its audit rows say which command acted. Web requests always carry a real user.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from anvil_forge.accounts.models import Membership, Organisation, Role
from anvil_forge.core.exceptions import NotFound, PermissionDenied


class Capability(StrEnum):
    VIEW = "view"
    EDIT = "edit"  # prompt sets and prompts
    SUBMIT = "submit"  # submit a set for review
    REVIEW = "review"  # approve or request changes
    REOPEN = "reopen"
    PUBLISH = "publish"  # publish and roll back
    MANAGE_TOKENS = "manage_tokens"
    MANAGE_ENVIRONMENTS = "manage_environments"
    MANAGE_PROJECT = "manage_project"  # create projects, change their settings
    MANAGE_PEERS = "manage_peers"
    MANAGE_MEMBERS = "manage_members"
    MANAGE_WEBHOOKS = "manage_webhooks"


_EVERYTHING = frozenset(Capability)
_WRITING = frozenset({Capability.VIEW, Capability.EDIT, Capability.SUBMIT, Capability.REOPEN, Capability.PUBLISH})

ROLE_CAPABILITIES: dict[str, frozenset[Capability]] = {
    Role.OWNER: _EVERYTHING,
    Role.ADMIN: _EVERYTHING,
    Role.EDITOR: _WRITING,
    Role.REVIEWER: frozenset({Capability.VIEW, Capability.REVIEW}),
    Role.VIEWER: frozenset({Capability.VIEW}),
}

_DESCRIPTIONS: dict[Capability, str] = {
    Capability.VIEW: "view this organisation",
    Capability.EDIT: "edit prompts",
    Capability.SUBMIT: "submit prompt sets for review",
    Capability.REVIEW: "approve or request changes",
    Capability.REOPEN: "reopen prompt sets",
    Capability.PUBLISH: "publish or roll back versions",
    Capability.MANAGE_TOKENS: "manage access tokens",
    Capability.MANAGE_ENVIRONMENTS: "manage environments",
    Capability.MANAGE_PROJECT: "manage projects and their settings",
    Capability.MANAGE_PEERS: "manage peer FORGEs",
    Capability.MANAGE_MEMBERS: "manage members",
    Capability.MANAGE_WEBHOOKS: "manage webhooks",
}


@dataclass(frozen=True, slots=True)
class SystemActor:
    """The operator at the server's console (the ``anvil-forge`` command). ``label`` goes into the audit trail."""

    label: str

    is_authenticated = True
    pk = None

    def get_username(self) -> str:
        return self.label


# Who acts: a signed-in user, an anonymous visitor (refused everywhere), or the console.
Actor: TypeAlias = AbstractBaseUser | AnonymousUser | SystemActor


def role_of(user: Any, organisation: Organisation) -> str | None:
    """The user's role in ``organisation``, or ``None`` when they are not a member (or not signed in)."""
    if user is None or isinstance(user, SystemActor) or not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.filter(user=user, organisation=organisation).values_list("role", flat=True).first()


def capabilities(user: Actor | None, organisation: Organisation) -> frozenset:
    """Everything ``user`` may do in ``organisation`` (empty when not a member)."""
    if isinstance(user, SystemActor):
        return _EVERYTHING
    role = role_of(user, organisation)
    return ROLE_CAPABILITIES.get(role, frozenset()) if role else frozenset()


def can(user: Actor | None, organisation: Organisation, capability: Capability) -> bool:
    """Whether ``user`` may take ``capability`` in ``organisation``. For hiding actions in the UI."""
    return Capability(capability) in capabilities(user, organisation)


def require(
    user: Actor | None,
    organisation: Organisation,
    capability: Capability,
    *,
    what: str = "",
) -> None:
    """Refuse unless ``user`` may take ``capability`` in ``organisation``.

    Raises :class:`NotFound` when ``user`` is not a member (``what`` names the object looked for, e.g.
    ``"project acme/support-bot"``), :class:`PermissionDenied` naming the role and the action otherwise.
    """
    if isinstance(user, SystemActor):
        return
    role = role_of(user, organisation)
    if role is None:
        raise NotFound(f"No {what or 'such object'} was found.")
    if Capability(capability) not in ROLE_CAPABILITIES.get(role, frozenset()):
        raise PermissionDenied(
            f"Your role in {organisation.slug} is {role}, which may not {_DESCRIPTIONS[Capability(capability)]}."
        )

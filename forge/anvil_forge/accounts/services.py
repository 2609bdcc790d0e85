"""Users, organisations and memberships. Every write checks the actor's role and is audited."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from anvil_forge.accounts.models import Membership, Organisation, Role
from anvil_forge.accounts.permissions import Actor, Capability, SystemActor, require, role_of
from anvil_forge.audit.services import audit_record
from anvil_forge.core.exceptions import ApplicationError, Conflict, PermissionDenied
from anvil_forge.core.validation import validate_name, validate_slug

User = get_user_model()


def user_create(
    *, actor: SystemActor, username: str, password: str, email: str = "", check_password: bool = True
) -> AbstractBaseUser:
    """Create a sign-in account (from the ``anvil-forge`` command). The password is hashed with argon2.

    ``check_password`` runs Django's password validators (length, common passwords); the demo seed turns
    it off for its well-known demo password.
    """
    if not isinstance(actor, SystemActor):
        raise PermissionDenied("Accounts are created with the anvil-forge createuser command.")
    username = (username or "").strip()
    if not username or len(username) > 150 or not all(c.isalnum() or c in "@.+-_" for c in username):
        raise ApplicationError(
            f"{username!r} is not a valid username: use letters, digits and @ . + - _ (at most 150)."
        )
    if check_password:
        try:
            validate_password(password)
        except ValidationError as exc:
            raise ApplicationError("The password is too weak: " + " ".join(exc.messages)) from exc
    with transaction.atomic():
        if User.objects.filter(username=username).exists():
            raise Conflict(f"A user named {username} already exists.")
        user = User.objects.create_user(username=username, email=email, password=password)
        audit_record(actor=actor, action="user.create", obj=user, organisation=None, data={"username": username})
    return user


def organisation_create(*, actor: Actor, slug: str, name: str = "") -> Organisation:
    """Create an organisation. A user who creates one becomes its owner."""
    if not getattr(actor, "is_authenticated", False):
        raise PermissionDenied("Sign in to create an organisation.")
    validate_slug(slug, what="organisation")
    name = validate_name(name or slug, what="organisation name")
    with transaction.atomic():
        if Organisation.objects.filter(slug=slug).exists():
            raise Conflict(f"An organisation named {slug} already exists.")
        organisation = Organisation.objects.create(slug=slug, name=name)
        audit_record(actor=actor, action="organisation.create", obj=organisation, organisation=organisation)
        if not isinstance(actor, SystemActor):
            membership = Membership.objects.create(user=actor, organisation=organisation, role=Role.OWNER)
            audit_record(
                actor=actor,
                action="membership.add",
                obj=membership,
                organisation=organisation,
                data={"username": actor.get_username(), "role": Role.OWNER},
            )
    return organisation


def membership_add(*, actor: Actor, organisation: Organisation, user: AbstractBaseUser, role: str) -> Membership:
    """Make ``user`` a member of ``organisation`` with ``role``. Only an owner may make another owner."""
    role = _valid_role(role)
    require(actor, organisation, Capability.MANAGE_MEMBERS, what=f"organisation {organisation.slug}")
    _require_owner_for_owner_changes(actor, organisation, role)
    try:
        with transaction.atomic():
            membership = Membership.objects.create(user=user, organisation=organisation, role=role)
            audit_record(
                actor=actor,
                action="membership.add",
                obj=membership,
                organisation=organisation,
                data={"username": user.get_username(), "role": role},
            )
    except IntegrityError:
        raise Conflict(f"{user.get_username()} is already a member of {organisation.slug}.") from None
    return membership


def membership_set_role(*, actor: Actor, membership: Membership, role: str) -> Membership:
    """Change a member's role. Only an owner changes owners; the last owner cannot be demoted."""
    role = _valid_role(role)
    organisation = membership.organisation
    require(actor, organisation, Capability.MANAGE_MEMBERS, what=f"organisation {organisation.slug}")
    with transaction.atomic():
        membership = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk)
        old = membership.role
        if old == role:
            return membership
        _require_owner_for_owner_changes(actor, organisation, role if role == Role.OWNER else old)
        if old == Role.OWNER:
            _refuse_removing_last_owner(organisation, membership)
        membership.role = role
        membership.save(update_fields=["role"])
        audit_record(
            actor=actor,
            action="membership.set_role",
            obj=membership,
            organisation=organisation,
            data={"username": membership.user.get_username(), "from": old, "to": role},
        )
    return membership


def membership_remove(*, actor: Actor, membership: Membership) -> None:
    """Remove a member from an organisation. The last owner cannot be removed."""
    organisation = membership.organisation
    require(actor, organisation, Capability.MANAGE_MEMBERS, what=f"organisation {organisation.slug}")
    with transaction.atomic():
        membership = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk)
        if membership.role == Role.OWNER:
            _require_owner_for_owner_changes(actor, organisation, Role.OWNER)
            _refuse_removing_last_owner(organisation, membership)
        audit_record(
            actor=actor,
            action="membership.remove",
            obj=membership,
            organisation=organisation,
            data={"username": membership.user.get_username(), "role": membership.role},
        )
        membership.delete()


def _valid_role(role: str) -> str:
    if role not in Role.values:
        raise ApplicationError(f"{role!r} is not a role; choose one of {', '.join(Role.values)}.")
    return role


def _require_owner_for_owner_changes(actor: Actor, organisation: Organisation, role: str) -> None:
    if role == Role.OWNER and not isinstance(actor, SystemActor) and role_of(actor, organisation) != Role.OWNER:
        raise PermissionDenied(f"Only an owner of {organisation.slug} may grant or remove the owner role.")


def _refuse_removing_last_owner(organisation: Organisation, membership: Membership) -> None:
    others = Membership.objects.filter(organisation=organisation, role=Role.OWNER).exclude(pk=membership.pk)
    if not others.exists():
        raise Conflict(f"{membership.user.get_username()} is the last owner of {organisation.slug}; add another first.")

"""Users, organisations and memberships. Every write checks the actor's role and is audited."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode

from anvil_forge.accounts import mail
from anvil_forge.accounts.models import Invitation, Membership, Organisation, Role, SetupLink
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
    username = _valid_username(username)
    if check_password:
        _check_new_password(password, username=username)
    with transaction.atomic():
        user = _new_user(username=username, password=password, email=email)
        audit_record(actor=actor, action="user.create", obj=user, organisation=None, data={"username": username})
    return user


def _valid_username(username: str) -> str:
    username = (username or "").strip()
    if not username or len(username) > 150 or not all(c.isalnum() or c in "@.+-_" for c in username):
        raise ApplicationError(
            f"{username!r} is not a valid username: use letters, digits and @ . + - _ (at most 150).",
            {"field": "username"},
        )
    return username


def _check_new_password(password: str, *, username: str = "", user: AbstractBaseUser | None = None) -> None:
    try:
        validate_password(password or "", user=user or User(username=username))
    except ValidationError as exc:
        raise ApplicationError("The password is too weak: " + " ".join(exc.messages), {"field": "password"}) from exc


def _new_user(*, username: str, password: str, email: str = "") -> AbstractBaseUser:
    """Inside the caller's transaction: a new account, refused when the username is taken."""
    if User.objects.filter(username__iexact=username).exists():
        raise Conflict(f"A user named {username} already exists; choose another username.", {"field": "username"})
    return User.objects.create_user(username=username, email=(email or "").strip(), password=password)


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


# First run ------------------------------------------------------------------------------------------------

SETUP_PATH = "/setup/{token}/"


def setup_link_ensure() -> str | None:
    """The token of the one-time setup link while the FORGE has no user (made on first call), else ``None``.

    ``anvil-forge serve`` prints it at start; the same link stays valid until it is used (or a user is made
    some other way, such as ``anvil-forge createuser``).
    """
    if User.objects.exists():
        return None
    with transaction.atomic():
        link = SetupLink.objects.filter(used_at__isnull=True).order_by("pk").first()
        if link is None:
            link = SetupLink.objects.create(token=secrets.token_urlsafe(32))
            audit_record(actor=SystemActor("anvil-forge serve"), action="setup.link", obj=link, organisation=None)
    return link.token


def setup_link_usable(token: str) -> bool:
    """Whether ``token`` opens the setup page: an unused link, and still no user on this FORGE."""
    if not token or User.objects.exists():
        return False
    return SetupLink.objects.filter(token=token, used_at__isnull=True).exists()


@dataclass(frozen=True)
class SetupResult:
    user: AbstractBaseUser
    organisation: Organisation
    project: Any


def setup_complete(
    *,
    token: str,
    username: str,
    password: str,
    email: str = "",
    organisation_slug: str,
    organisation_name: str = "",
    project_slug: str,
    project_name: str = "",
    staging: bool = True,
) -> SetupResult:
    """Use the setup link: the first user, owner of their organisation, and its first project, all or nothing."""
    from anvil_forge.prompts import services as prompt_services  # prompts.services builds on this module

    username = _valid_username(username)
    _check_new_password(password, username=username)
    with transaction.atomic():
        link = SetupLink.objects.select_for_update().filter(token=token or "", used_at__isnull=True).first()
        if link is None or User.objects.exists():
            raise Conflict("This setup link has been used already: sign in instead.")
        user = _new_user(username=username, password=password, email=email)
        link.used_at = timezone.now()
        link.save(update_fields=["used_at"])
        audit_record(actor=user, action="setup.complete", obj=link, organisation=None, data={"username": username})
        audit_record(actor=user, action="user.create", obj=user, organisation=None, data={"username": username})
        organisation = organisation_create(actor=user, slug=organisation_slug, name=organisation_name)
        project = prompt_services.project_create(
            actor=user, organisation=organisation, slug=project_slug, name=project_name, staging=staging
        )
    return SetupResult(user=user, organisation=organisation, project=project)


# Invitations ----------------------------------------------------------------------------------------------

INVITATION_DAYS = 7
MAX_INVITATION_DAYS = 90
INVITE_PATH = "/invite/{token}/"


def _hash(token: str) -> str:
    return hashlib.sha256((token or "").encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    url: str  # shown once to the inviting admin; only its hash is stored
    emailed: bool


def invitation_create(
    *,
    actor: Actor,
    organisation: Organisation,
    role: str,
    email: str = "",
    days: int = INVITATION_DAYS,
    base_url: str,
) -> IssuedInvitation:
    """Invite someone to ``organisation`` as ``role``; mailed to ``email`` when e-mail is configured.

    Owners and admins invite; only an owner invites an owner. The link works once, until it expires
    (``days``, default 7) or is revoked.
    """
    role = _valid_role(role)
    require(actor, organisation, Capability.MANAGE_MEMBERS, what=f"organisation {organisation.slug}")
    _require_owner_for_owner_changes(actor, organisation, role)
    email = (email or "").strip()
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise ApplicationError(f"{email!r} is not an e-mail address.", {"field": "email"}) from None
    if not isinstance(days, int) or not 1 <= days <= MAX_INVITATION_DAYS:
        raise ApplicationError(f"An invitation lasts from 1 to {MAX_INVITATION_DAYS} days.", {"field": "days"})
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        invitation = Invitation.objects.create(
            organisation=organisation,
            role=role,
            email=email,
            token_hash=_hash(token),
            created_by=actor if isinstance(actor, User) else None,
            expires_at=timezone.now() + timedelta(days=days),
        )
        audit_record(
            actor=actor,
            action="invitation.create",
            obj=invitation,
            organisation=organisation,
            data={"role": role, "email": email, "expires_at": invitation.expires_at.isoformat()},
        )
    url = base_url.rstrip("/") + INVITE_PATH.format(token=token)
    emailed = False
    if email:
        inviter = actor.get_username()
        emailed = mail.send(
            to=email,
            subject=f"You are invited to {organisation.name} on Anvil",
            body=(
                f"{inviter} invites you to join {organisation.name} on Anvil as {Role(role).label.lower()}.\n\n"
                f"Open this link to accept (it works once, until {invitation.expires_at:%Y-%m-%d %H:%M} UTC):\n\n"
                f"{url}\n\nIf you did not expect this, ignore this message.\n"
            ),
        )
    return IssuedInvitation(invitation=invitation, url=url, emailed=emailed)


def invitation_revoke(*, actor: Actor, invitation: Invitation) -> Invitation:
    """Revoke a pending invitation: its link stops working at once."""
    organisation = invitation.organisation
    require(actor, organisation, Capability.MANAGE_MEMBERS, what=f"organisation {organisation.slug}")
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.accepted_at or invitation.revoked_at:
            raise Conflict("This invitation is no longer pending.")
        _require_owner_for_owner_changes(actor, organisation, invitation.role)
        invitation.revoked_at = timezone.now()
        invitation.revoked_by = actor if isinstance(actor, User) else None
        invitation.save(update_fields=["revoked_at", "revoked_by"])
        audit_record(
            actor=actor,
            action="invitation.revoke",
            obj=invitation,
            organisation=organisation,
            data={"role": invitation.role, "email": invitation.email},
        )
    return invitation


def invitation_pending(token: str) -> Invitation | None:
    """The pending invitation behind a link's token, or ``None`` (unknown, used, revoked or expired)."""
    if not token or len(token) > 200:
        return None
    return (
        Invitation.objects.select_related("organisation", "created_by")
        .filter(
            token_hash=_hash(token), accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
        )
        .first()
    )


def invitation_accept(
    *,
    token: str,
    user: AbstractBaseUser | None = None,
    username: str = "",
    password: str = "",
    email: str = "",
) -> Membership:
    """Follow an invitation: a signed-in ``user`` joins, or a new account (``username``, ``password``) is made."""
    if user is None:
        username = _valid_username(username)
        _check_new_password(password, username=username)
    elif not getattr(user, "is_authenticated", False):
        raise PermissionDenied("Sign in to accept this invitation.")
    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update()
            .filter(token_hash=_hash(token), accepted_at__isnull=True, revoked_at__isnull=True)
            .first()
        )
        if invitation is None or invitation.expires_at <= timezone.now():
            raise Conflict("This invitation link has expired, was revoked, or was used already. Ask for a new one.")
        organisation = invitation.organisation
        if user is None:
            user = _new_user(username=username, password=password, email=email or invitation.email)
            audit_record(
                actor=user, action="user.create", obj=user, organisation=organisation, data={"username": username}
            )
        elif Membership.objects.filter(user=user, organisation=organisation).exists():
            raise Conflict(f"You are already a member of {organisation.name}.")
        membership = Membership.objects.create(user=user, organisation=organisation, role=invitation.role)
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        audit_record(
            actor=user,
            action="invitation.accept",
            obj=invitation,
            organisation=organisation,
            data={"username": user.get_username(), "role": invitation.role},
        )
        audit_record(
            actor=user,
            action="membership.add",
            obj=membership,
            organisation=organisation,
            data={"username": user.get_username(), "role": invitation.role, "invitation": invitation.pk},
        )
    return membership


# Passwords and sessions -----------------------------------------------------------------------------------

RESET_PATH = "/reset/{uid}/{token}/"


def password_change(
    *, actor: AbstractBaseUser, current_password: str, new_password: str, keep_session: str | None = None
) -> None:
    """Change one's own password (the current one is required); every other session of the user ends."""
    if not getattr(actor, "is_authenticated", False) or isinstance(actor, SystemActor):
        raise PermissionDenied("Sign in to change your password.")
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=actor.pk)
        if not user.check_password(current_password or ""):
            raise ApplicationError("The current password is not right.", {"field": "current_password"})
        _check_new_password(new_password, user=user)
        user.set_password(new_password)
        user.save(update_fields=["password"])
        ended = _end_sessions(user, keep=keep_session)
        audit_record(
            actor=user, action="user.password_change", obj=user, organisation=None, data={"sessions_ended": ended}
        )
    actor.password = user.password  # the caller's copy, so update_session_auth_hash keeps this session


def sessions_end_all(*, actor: AbstractBaseUser) -> int:
    """Sign the user out everywhere, this session included. Returns how many sessions ended."""
    if not getattr(actor, "is_authenticated", False) or isinstance(actor, SystemActor):
        raise PermissionDenied("Sign in first.")
    with transaction.atomic():
        ended = _end_sessions(actor)
        audit_record(
            actor=actor, action="user.sign_out_everywhere", obj=actor, organisation=None, data={"sessions": ended}
        )
    return ended


def _end_sessions(user: AbstractBaseUser, keep: str | None = None) -> int:
    """Delete the user's stored sessions (Django's database sessions), except ``keep``."""
    from django.contrib.sessions.models import Session

    ended = []
    for session in Session.objects.filter(expire_date__gt=timezone.now()).exclude(session_key=keep or ""):
        if str(session.get_decoded().get(SESSION_KEY)) == str(user.pk):
            ended.append(session.session_key)
    Session.objects.filter(session_key__in=ended).delete()
    return len(ended)


def _reset_url(user: AbstractBaseUser, base_url: str) -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return base_url.rstrip("/") + RESET_PATH.format(uid=uid, token=default_token_generator.make_token(user))


def password_reset_link_issue(*, actor: Actor, membership: Membership, base_url: str) -> str:
    """A password reset link for a member, for an admin to hand over when e-mail is not configured.

    The actor must manage members in every organisation the person belongs to, and be an owner where they
    are an owner: a reset link is the account, so an admin of one organisation cannot take over someone
    who also holds power elsewhere. The link works once, for ``PASSWORD_RESET_TIMEOUT`` (3 days).
    """
    organisation = membership.organisation
    require(actor, organisation, Capability.MANAGE_MEMBERS, what=f"organisation {organisation.slug}")
    target = membership.user
    if not isinstance(actor, SystemActor) and target.pk == actor.pk:
        raise ApplicationError("Change your own password on your account page.")
    for other in Membership.objects.filter(user=target).select_related("organisation"):
        require(actor, other.organisation, Capability.MANAGE_MEMBERS, what=f"organisation {other.organisation.slug}")
        _require_owner_for_owner_changes(actor, other.organisation, other.role)
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="user.password_reset_link",
            obj=target,
            organisation=organisation,
            data={"username": target.get_username()},
        )
    return _reset_url(target, base_url)


def password_reset_request(*, login: str, base_url: str) -> bool:
    """E-mail a reset link to the account named by username or e-mail address, if it has an address.

    Says nothing about whether the account exists (the page answers the same either way); returns whether
    a message went out, for tests and logs.
    """
    login = (login or "").strip()
    if not login or not mail.email_enabled():
        return False
    users = list(User.objects.filter(is_active=True).filter(username__iexact=login)) or list(
        User.objects.filter(is_active=True, email__iexact=login)
    )
    if len(users) != 1 or not users[0].email:
        return False
    user = users[0]
    with transaction.atomic():
        audit_record(actor=user, action="user.password_reset_request", obj=user, organisation=None)
    return mail.send(
        to=user.email,
        subject="Reset your Anvil password",
        body=(
            f"Someone asked to reset the password of {user.get_username()} on Anvil.\n\n"
            f"Open this link to choose a new one (it works once, for a few days):\n\n{_reset_url(user, base_url)}\n\n"
            "If it was not you, ignore this message: your password stays as it is.\n"
        ),
    )


def password_reset_user(uidb64: str, token: str) -> AbstractBaseUser | None:
    """The user a reset link is for, while the link is valid (Django's token: single-use, time-limited)."""
    try:
        pk = urlsafe_base64_decode(uidb64 or "").decode()
        user = User.objects.filter(pk=int(pk), is_active=True).first()
    except (ValueError, TypeError, OverflowError):
        return None
    if user is None or not default_token_generator.check_token(user, token):
        return None
    return user


def password_reset_complete(*, uidb64: str, token: str, new_password: str) -> AbstractBaseUser:
    """Set a new password through a reset link; every session of the user ends."""
    user = password_reset_user(uidb64, token)
    if user is None:
        raise Conflict("This reset link has expired or was used already. Ask for a new one.")
    _check_new_password(new_password, user=user)
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        if not default_token_generator.check_token(user, token):
            raise Conflict("This reset link has expired or was used already. Ask for a new one.")
        user.set_password(new_password)
        user.save(update_fields=["password"])
        ended = _end_sessions(user)
        audit_record(
            actor=user, action="user.password_reset", obj=user, organisation=None, data={"sessions_ended": ended}
        )
    return user


def setup_link_announcement(base_url: str) -> str | None:
    """What ``anvil-forge serve`` prints at start while the FORGE has no user: the setup link, or ``None``.

    A database that cannot be read yet (not migrated, unreachable) gives a hint to migrate; serving goes on.
    """
    from django.db import DatabaseError

    try:
        token = setup_link_ensure()
    except DatabaseError as exc:
        return f"Could not read the users of this FORGE ({exc}). A new database? Run `anvil-forge manage migrate`.\n"
    if token is None:
        return None
    url = base_url.rstrip("/") + SETUP_PATH.format(token=token)
    return (
        "This FORGE has no user yet. Open this one-time link to create the first owner, "
        f"their organisation and first project:\n\n    {url}\n"
    )

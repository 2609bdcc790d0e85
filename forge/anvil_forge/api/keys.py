"""Personal API keys: ``anvil_key_`` and 43 URL-safe characters (32 random bytes), shown once, stored as sha256.

A key acts as its user, with the user's role in each organisation (``accounts.permissions`` decides, as for the
web pages), optionally limited to one organisation (``organisation``) and to reading (``read_only``). It may
expire; it can be revoked. Its use is recorded as ``last_used_at`` (at most once a minute, so reads stay cheap);
what it changes is audited by the services as its user. Making and revoking a key are audited too.

What it reads is recorded per key (:func:`api_key_read_record`): a counter per key, resource and hour
(:class:`~anvil_forge.accounts.models.ApiKeyRead`, listed on ``/account/`` under the key), and one
``api_key.read`` audit event, as the key's user, for the first read of each resource by each key in each hour, so
an organisation's audit log says who read what with which key without one entry per request.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F, Max, QuerySet, Sum
from django.utils import timezone

from anvil_forge.accounts.models import ApiKey, ApiKeyRead, Membership, Organisation
from anvil_forge.accounts.permissions import Actor, SystemActor
from anvil_forge.audit.services import audit_record
from anvil_forge.core.exceptions import ApplicationError, NotFound, PermissionDenied
from anvil_forge.core.validation import validate_name
from anvil_forge.distribution.tokens import MAX_EXPIRY_DAYS, expiry_after, token_hash

__all__ = [
    "KEY_START",
    "NewApiKey",
    "api_key_authenticate",
    "api_key_create",
    "api_key_read_record",
    "api_key_reads",
    "api_key_revoke",
    "api_keys_for",
    "key_well_formed",
]

KEY_START = "anvil_key_"
PREFIX_RANDOM_CHARS = 6
_KEY_PATTERN = re.compile(r"^anvil_key_[A-Za-z0-9_-]{43}$")
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_KEYS_PER_USER = 50


@dataclass(frozen=True, slots=True)
class NewApiKey:
    key: ApiKey
    raw: str  # shown once, never stored


def key_well_formed(raw: str | None) -> bool:
    """Whether ``raw`` has the shape of an API key (a cheap check before any database work)."""
    return bool(raw) and _KEY_PATTERN.match(raw or "") is not None


def api_key_create(
    *,
    actor: Actor,
    user: Any,
    name: str,
    organisation: Organisation | None = None,
    read_only: bool = False,
    expires_in_days: int | None = None,
) -> NewApiKey:
    """Make a key for ``user`` (``actor`` is that user, or the console). The raw key is in the result only.

    A key limited to an organisation needs the user to be a member of it.
    """
    if not isinstance(actor, SystemActor) and getattr(actor, "pk", None) != getattr(user, "pk", object()):
        raise PermissionDenied("An API key can be made only by its own user (or at the server's console).")
    if not getattr(user, "is_active", False):
        raise ApplicationError(f"{user.get_username()} is not an active user.")
    name = validate_name(name, what="key name")
    if organisation is not None and not Membership.objects.filter(user=user, organisation=organisation).exists():
        raise NotFound(f"{user.get_username()} is not a member of {organisation.slug}.")
    now = timezone.now()
    expires_at: datetime | None = None
    if expires_in_days is not None:
        try:
            expires_at = expiry_after(expires_in_days, now=now)
        except ValueError:
            raise ApplicationError(f"A key expires after 1 to {MAX_EXPIRY_DAYS} days.") from None
    raw = KEY_START + secrets.token_urlsafe(32)
    with transaction.atomic():
        live = ApiKey.objects.select_for_update().filter(user=user, revoked_at__isnull=True)
        if len(live) >= MAX_KEYS_PER_USER:
            raise ApplicationError(f"A user has at most {MAX_KEYS_PER_USER} keys; revoke one first.")
        key = ApiKey.objects.create(
            user=user,
            name=name,
            prefix=raw[: len(KEY_START) + PREFIX_RANDOM_CHARS],
            key_hash=token_hash(raw),
            organisation=organisation,
            read_only=read_only,
            expires_at=expires_at,
        )
        audit_record(
            actor=actor,
            action="api_key.create",
            obj=key,
            organisation=organisation,
            data={
                "user": user.get_username(),
                "prefix": key.prefix,
                "name": name,
                "organisation": organisation.slug if organisation else None,
                "read_only": read_only,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
    return NewApiKey(key=key, raw=raw)


def api_key_revoke(*, actor: Actor, key: ApiKey) -> ApiKey:
    """Revoke a key of the actor's own (or any, from the console). Revoking twice changes nothing."""
    if not isinstance(actor, SystemActor) and getattr(actor, "pk", None) != key.user_id:
        raise NotFound("No such API key was found.")
    with transaction.atomic():
        key = ApiKey.objects.select_for_update(of=("self",)).select_related("user", "organisation").get(pk=key.pk)
        if key.revoked_at is not None:
            return key
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor,
            action="api_key.revoke",
            obj=key,
            organisation=key.organisation,
            data={"user": key.user.get_username(), "prefix": key.prefix, "name": key.name},
        )
    return key


def api_key_authenticate(raw: str | None, *, now: datetime | None = None) -> ApiKey | None:
    """The active key ``raw`` is (not revoked, not expired, of an active user), with its user; else ``None``."""
    if not key_well_formed(raw):
        return None
    now = now or timezone.now()
    key = (
        ApiKey.objects.select_related("user", "organisation")
        .filter(key_hash=token_hash(raw or ""), revoked_at__isnull=True)
        .first()
    )
    if key is None or not key.user.is_active or (key.expires_at is not None and key.expires_at <= now):
        return None
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def api_keys_for(*, actor: Actor) -> QuerySet[ApiKey]:
    """The actor's own keys, newest first (the console: everyone's)."""
    keys = ApiKey.objects.select_related("user", "organisation").order_by("-created_at", "-id")
    if isinstance(actor, SystemActor):
        return keys
    if getattr(actor, "pk", None) is None:
        return keys.none()
    return keys.filter(user_id=actor.pk)


def user_named(username: str) -> Any:
    """The active user ``username`` (for the console), or :class:`NotFound`."""
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise NotFound(f"No active user named {username}.")
    return user


def api_key_read_record(
    *, key: ApiKey, resource: str, organisation: str | None = None, project: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Count one read of ``resource`` (a management API path) with ``key``; ``True`` when it was the key's first
    read of it this hour, which is also audited (``api_key.read``, as the key's user, in ``organisation`` and
    ``project`` when the path names them). Two queries at most; one (an UPDATE) for every later read."""
    now = now or timezone.now()
    hour = now.replace(minute=0, second=0, microsecond=0)
    resource = resource[:300]
    same = ApiKeyRead.objects.filter(key=key, resource=resource, hour=hour)
    if same.update(count=F("count") + 1, last_at=now):
        return False
    from anvil_forge.prompts.models import Project

    try:
        with transaction.atomic():
            ApiKeyRead.objects.create(key=key, resource=resource, hour=hour, last_at=now)
            # Only an organisation the key's user belongs to (a read answered 404 elsewhere is never counted, but
            # an event must never land in another organisation's log whatever the caller passes).
            org = (
                Organisation.objects.filter(slug=organisation, memberships__user=key.user).first()
                if organisation else None
            )
            place = Project.objects.filter(organisation=org, slug=project).first() if org and project else None
            audit_record(
                actor=key.user,
                action="api_key.read",
                obj=key,
                organisation=org,
                project=place,
                data={"prefix": key.prefix, "name": key.name, "resource": resource},
            )
    except IntegrityError:  # a read at the same moment made the row: count this one there
        same.update(count=F("count") + 1, last_at=now)
        return False
    return True


def api_key_reads(*, keys: list[ApiKey], days: int = 7, now: datetime | None = None) -> dict[int, list[dict[str, Any]]]:
    """Key id -> what it read in the last ``days`` days: ``{"resource", "count", "last_at"}``, the most recent
    first. Only for ``keys`` (the caller's own, from :func:`api_keys_for`)."""
    now = now or timezone.now()
    rows = (
        ApiKeyRead.objects.filter(key__in=[key.pk for key in keys], hour__gte=now - timedelta(days=days))
        .values("key_id", "resource")
        .annotate(total=Sum("count"), last=Max("last_at"))
        .order_by("key_id", "-last")
    )
    reads: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        reads.setdefault(row["key_id"], []).append(
            {"resource": row["resource"], "count": row["total"], "last_at": row["last"]}
        )
    return reads

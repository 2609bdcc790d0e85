"""Writes of the distribution app: ACCESS_TOKENs and LIVE instance check-ins.

Every change runs in one transaction with its audit event; stream announcements (a revoked token closing
its open streams) leave only after commit, through :mod:`anvil_forge.distribution.events`.
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from anvil_forge.accounts.permissions import Capability, require
from anvil_forge.audit.services import audit_record
from anvil_forge.core.exceptions import ApplicationError, Conflict
from anvil_forge.distribution import events
from anvil_forge.distribution.checkin import CheckIn
from anvil_forge.distribution.models import AccessToken, LiveInstance, Release, TokenKind
from anvil_forge.distribution.tokens import token_generate, token_hash, token_well_formed
from anvil_forge.prompts.models import Environment, Project

logger = logging.getLogger(__name__)

LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_TOKEN_NAME_LENGTH = 200


def token_create(
    *,
    actor: Any,
    project: Project,
    environment: Environment,
    kind: str,
    name: str,
    expires_at: datetime | None = None,
) -> tuple[AccessToken, str]:
    """Make an ACCESS_TOKEN for ``environment`` of ``project``; return it with the raw token (shown once).

    ``actor`` needs the ``manage_tokens`` capability (owner or admin) or is the console's ``SystemActor``.
    Several tokens may be active for one environment at once, so a new one can replace an old one without
    downtime.
    """
    require(actor, project.organisation, Capability.MANAGE_TOKENS, what=f"project {project}")
    if environment.project_id != project.pk:
        raise ApplicationError(f"Environment {environment.slug!r} does not belong to project {project}.")
    if kind not in TokenKind.values:
        raise ApplicationError(f"Unknown token kind {kind!r}: use one of {', '.join(TokenKind.values)}.")
    name = (name or "").strip()
    if not name:
        raise ApplicationError("A token needs a name that says who uses it (for example 'web servers').")
    if len(name) > MAX_TOKEN_NAME_LENGTH:
        raise ApplicationError(f"A token name may be at most {MAX_TOKEN_NAME_LENGTH} characters.")
    if expires_at is not None and expires_at <= timezone.now():
        raise ApplicationError("The expiry date must be in the future.")
    new = token_generate(kind)
    with transaction.atomic():
        token = AccessToken.objects.create(
            project=project,
            environment=environment,
            kind=kind,
            name=name,
            prefix=new.prefix,
            token_hash=new.token_hash,
            created_by=_user_or_none(actor),
            expires_at=expires_at,
        )
        audit_record(
            actor=actor,
            action="token.create",
            obj=token,
            organisation=project.organisation,
            project=project,
            data={
                "prefix": token.prefix,
                "kind": kind,
                "name": name,
                "environment": environment.slug,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
    return token, new.raw


def token_revoke(*, actor: Any, token: AccessToken) -> AccessToken:
    """Revoke ``token`` at once: requests with it get 401 and its open streams close within a second."""
    project = token.project
    require(actor, project.organisation, Capability.MANAGE_TOKENS, what=f"project {project}")
    with transaction.atomic():
        locked = AccessToken.objects.select_for_update().get(pk=token.pk)
        if locked.revoked_at is not None:
            raise Conflict(f"Token {locked.prefix}… ({locked.name}) was already revoked.")
        locked.revoked_at = timezone.now()
        locked.revoked_by = _user_or_none(actor)
        locked.save(update_fields=["revoked_at", "revoked_by"])
        audit_record(
            actor=actor,
            action="token.revoke",
            obj=locked,
            organisation=project.organisation,
            project=project,
            data={"prefix": locked.prefix, "kind": locked.kind, "name": locked.name},
        )
        events.token_revoked(locked)
    token.revoked_at, token.revoked_by = locked.revoked_at, locked.revoked_by
    return locked


def token_authenticate(raw: str | None, *, kind: str) -> AccessToken | None:
    """The active token of ``kind`` that ``raw`` is, or ``None`` (unknown, wrong kind, expired or revoked).

    The lookup is by sha256 hash, so the secret is never compared character by character against stored
    data; the hashes are compared with :func:`hmac.compare_digest` as well. ``last_used_at`` is written at
    most once a minute per token. Callers answer ``None`` with the same 401 whatever the reason.
    """
    if not raw or not token_well_formed(raw):
        return None
    digest = token_hash(raw)
    try:
        # get(), not first(): the hash is unique, and first() would add an ORDER BY to compile and run.
        token = AccessToken.objects.select_related("project__organisation", "environment").get(token_hash=digest)
    except AccessToken.DoesNotExist:
        return None
    if not hmac.compare_digest(token.token_hash, digest):
        return None
    now = timezone.now()
    if token.kind != kind or token.revoked_at is not None or (token.expires_at and token.expires_at <= now):
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        AccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def token_is_active(token_id: int) -> bool:
    """Whether the token is still neither revoked nor expired (the stream's periodic re-check)."""
    return token_ids_inactive([token_id]) == set()


def token_ids_inactive(token_ids: list[int]) -> set[int]:
    """Of ``token_ids``, those that are revoked, expired or gone."""
    if not token_ids:
        return set()
    now = timezone.now()
    active = set(
        AccessToken.objects.filter(pk__in=token_ids, revoked_at__isnull=True)
        .exclude(expires_at__lte=now)
        .values_list("pk", flat=True)
    )
    return set(token_ids) - active


def instance_checkin(*, token: AccessToken, checkin: CheckIn) -> LiveInstance:
    """Record what a LIVE instance reports (upsert by environment and instance id).

    When the instance now runs the environment's current version of a set that it did not run before, an
    acknowledgement (``release.acknowledge``) is audited for that release.
    """
    try:
        return _instance_checkin(token=token, checkin=checkin)
    except IntegrityError:
        # Two first check-ins of one instance raced; the other one created the row, so this is an update.
        return _instance_checkin(token=token, checkin=checkin)


def _instance_checkin(*, token: AccessToken, checkin: CheckIn) -> LiveInstance:
    environment = token.environment
    project = token.project
    now = timezone.now()
    with transaction.atomic():
        instance = (
            LiveInstance.objects.select_for_update()
            .filter(environment=environment, instance_id=checkin.instance_id)
            .first()
        )
        previous_versions: dict[str, int] = dict(instance.versions) if instance else {}
        fields = {
            "project": project,
            "token": token,
            "name": checkin.name,
            "host": checkin.host,
            "process_count": checkin.process_count,
            "client_version": checkin.client_version,
            "mode": checkin.mode,
            "pins": checkin.pins,
            "versions": checkin.versions,
            "usage": checkin.usage,
            "last_seen_at": now,
        }
        if instance is None:
            instance = LiveInstance.objects.create(
                environment=environment, instance_id=checkin.instance_id, **fields
            )
        else:
            for key, value in fields.items():
                setattr(instance, key, value)
            instance.save(update_fields=list(fields))
        newly_running = {
            slug: number for slug, number in checkin.versions.items() if previous_versions.get(slug) != number
        }
        if newly_running:
            _record_acknowledgements(instance=instance, token=token, newly_running=newly_running)
    return instance


def _record_acknowledgements(*, instance: LiveInstance, token: AccessToken, newly_running: dict[str, int]) -> None:
    from anvil_forge.distribution.selectors import current_releases

    current = {
        release.prompt_set.slug: release
        for release in current_releases(environment=instance.environment)
        if release.prompt_set.slug in newly_running
    }
    for slug, number in sorted(newly_running.items()):
        release: Release | None = current.get(slug)
        if release is None or release.version.number != number:
            continue
        audit_record(
            actor=None,
            actor_label=f"instance {instance.name}"[:200],
            action="release.acknowledge",
            obj=release,
            organisation=token.project.organisation,
            project=token.project,
            data={
                "instance_id": instance.instance_id,
                "instance": instance.name,
                "host": instance.host,
                "set": slug,
                "version": number,
                "environment": instance.environment.slug,
                "token": token.prefix,
            },
        )


def _user_or_none(actor: Any) -> Any:
    return actor if getattr(actor, "pk", None) is not None else None

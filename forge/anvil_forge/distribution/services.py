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
from anvil_forge.audit.models import AuditEvent
from anvil_forge.audit.services import audit_record
from anvil_forge.core.exceptions import ApplicationError, Conflict
from anvil_forge.distribution import events
from anvil_forge.distribution.checkin import CheckIn
from anvil_forge.distribution.models import AccessToken, LiveInstance, LiveProcess, Release, TokenKind
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


def instance_checkin(*, token: AccessToken, checkin: CheckIn) -> LiveInstance | None:
    """Record what one process of a LIVE instance reports; return its instance (``None`` after a goodbye of an
    instance never seen).

    The instance is the application on its host (``checkin.instance_id``, shared by its processes); the
    process is ``checkin.process_id``. A periodic check-in of a known process that runs what it ran costs one
    small UPDATE of its row. A new process, a change of versions, mode or pins, or of the instance's name,
    host or token takes the full path (one transaction, the instance row locked). A goodbye marks the
    process gone at once; the instance's other processes stay.

    When every live process of the instance that follows a set runs the environment's current version of
    it, an acknowledgement (``release.acknowledge``) is audited for that release, once per instance.
    """
    now = timezone.now()
    if checkin.goodbye:
        return _process_goodbye(token=token, checkin=checkin, now=now)
    process = _known_process(environment_id=token.environment_id, checkin=checkin)
    if process is not None and _process_touch(process=process, token=token, checkin=checkin, now=now):
        return process.instance
    try:
        return _process_register(token=token, checkin=checkin, now=now)
    except IntegrityError:
        # Two first check-ins of one instance or process raced; the other created the row, so this is an update.
        return _process_register(token=token, checkin=checkin, now=now)


def _known_process(*, environment_id: int, checkin: CheckIn) -> LiveProcess | None:
    try:
        # get(), not first(): the pair is unique, and first() would add an ORDER BY to compile and run.
        return LiveProcess.objects.select_related("instance").get(
            instance__environment_id=environment_id,
            instance__instance_id=checkin.instance_id,
            process_id=checkin.process_id,
        )
    except LiveProcess.DoesNotExist:
        return None


def _process_touch(*, process: LiveProcess, token: AccessToken, checkin: CheckIn, now: datetime) -> bool:
    """The cheap path: one UPDATE of the process row when nothing that counts changed; ``False``: the full path."""
    instance = process.instance
    if (
        process.versions != checkin.versions
        or process.pins != checkin.pins
        or process.mode != checkin.mode
        or process.expires_at <= now  # aged out (perhaps pruned): the full path counts it in again
        or instance.name != checkin.name
        or instance.host != checkin.host
        or instance.token_id != token.pk
    ):
        return False
    fields: dict[str, Any] = {"last_seen_at": now, "expires_at": now + timedelta(seconds=checkin.gone_after_seconds)}
    if process.client_version != checkin.client_version:
        fields["client_version"] = checkin.client_version
    if process.usage != checkin.usage:
        fields["usage"] = checkin.usage
    return LiveProcess.objects.filter(pk=process.pk).update(**fields) == 1


def _process_register(*, token: AccessToken, checkin: CheckIn, now: datetime) -> LiveInstance:
    environment = token.environment
    with transaction.atomic():
        instance = (
            LiveInstance.objects.select_for_update()
            .filter(environment=environment, instance_id=checkin.instance_id)
            .first()
        )
        own = {"project": token.project, "token": token, "name": checkin.name, "host": checkin.host}
        if instance is None:
            _prune_offline_instances(environment=environment, now=now)
            instance = LiveInstance.objects.create(
                environment=environment, instance_id=checkin.instance_id, last_seen_at=now, **own
            )
        elif any(getattr(instance, key) != value for key, value in own.items()):
            for key, value in own.items():
                setattr(instance, key, value)
            instance.last_seen_at = now
            instance.save(update_fields=[*own, "last_seen_at"])
        process = LiveProcess.objects.filter(instance=instance, process_id=checkin.process_id).first()
        previous: dict[str, int] = dict(process.versions) if process and process.expires_at > now else {}
        fields = {
            "client_version": checkin.client_version,
            "mode": checkin.mode,
            "pins": checkin.pins,
            "versions": checkin.versions,
            "usage": checkin.usage,
            "last_seen_at": now,
            "expires_at": now + timedelta(seconds=checkin.gone_after_seconds),
        }
        if process is None:
            # A process joins: the rows of the instance's processes that have aged out or said goodbye go.
            LiveProcess.objects.filter(instance=instance, expires_at__lte=now).delete()
            LiveProcess.objects.create(instance=instance, process_id=checkin.process_id, first_seen_at=now, **fields)
        else:
            LiveProcess.objects.filter(pk=process.pk).update(**fields)
        newly_running = {slug for slug, number in checkin.versions.items() if previous.get(slug) != number}
        if newly_running:
            _record_acknowledgements(instance=instance, token=token, slugs=newly_running, now=now)
    return instance


def _process_goodbye(*, token: AccessToken, checkin: CheckIn, now: datetime) -> LiveInstance | None:
    """The process exits cleanly: it is gone now (its row kept, hidden, with its last state for an offline
    instance), and the instance's other processes may all run a release it alone did not."""
    with transaction.atomic():
        instance = (
            LiveInstance.objects.select_for_update()
            .filter(environment=token.environment, instance_id=checkin.instance_id)
            .first()
        )
        if instance is None:
            return None
        process = LiveProcess.objects.filter(instance=instance, process_id=checkin.process_id).first()
        if process is None or process.expires_at <= now:
            return instance
        LiveProcess.objects.filter(pk=process.pk).update(last_seen_at=now, expires_at=now)
        if process.versions or process.pins:
            _record_acknowledgements(
                instance=instance, token=token, slugs=set(process.versions) | set(process.pins), now=now
            )
    return instance


def _prune_offline_instances(*, environment: Environment, now: datetime) -> None:
    """Delete the environment's instances offline for longer than ``OFFLINE_RETENTION`` (with their processes)."""
    retained = LiveInstance.objects.filter(environment=environment).retained(now=now).values("pk")
    LiveInstance.objects.filter(environment=environment).exclude(pk__in=retained).delete()


def _record_acknowledgements(*, instance: LiveInstance, token: AccessToken, slugs: set[str], now: datetime) -> None:
    """Audit ``release.acknowledge`` for each set in ``slugs`` whose current release every live process of the
    instance that follows the set now runs, unless the instance acknowledged that release before."""
    from anvil_forge.distribution.selectors import current_releases

    current = {
        release.prompt_set.slug: release
        for release in current_releases(environment=instance.environment)
        if release.prompt_set.slug in slugs
    }
    if not current:
        return
    live = list(LiveProcess.objects.live(now=now).filter(instance=instance))
    for slug, release in sorted(current.items()):
        number = release.version.number
        following = [process for process in live if slug in process.versions or slug in process.pins]
        if not following or any(process.versions.get(slug) != number for process in following):
            continue
        already = AuditEvent.objects.filter(
            action="release.acknowledge",
            object_type=Release._meta.label_lower,
            object_id=str(release.pk),
            data__instance_id=instance.instance_id,
        )
        if already.exists():
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
                "processes": len(following),
                "set": slug,
                "version": number,
                "environment": instance.environment.slug,
                "token": token.prefix,
            },
        )


def _user_or_none(actor: Any) -> Any:
    return actor if getattr(actor, "pk", None) is not None else None

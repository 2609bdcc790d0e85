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
from anvil_forge.distribution.page_events import project_changed
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


class CheckinBatch:
    """What the check-ins recorded together share, read once per environment instead of once per check-in: the
    environment's current releases (for acknowledgements) and the pruning of long-offline instances.

    Made by :func:`instance_checkins_record` after its batch was taken, so everything a check-in in it reports
    (a version is reported only after its release committed) is in the releases read here.
    """

    def __init__(self) -> None:
        self._current: dict[int, list[Release]] = {}
        self._pruned: set[int] = set()

    def current_releases(self, environment: Environment) -> list[Release]:
        from anvil_forge.distribution.selectors import current_releases

        releases = self._current.get(environment.pk)
        if releases is None:
            releases = self._current[environment.pk] = current_releases(environment=environment)
        return releases

    def prune_offline_instances(self, environment: Environment, now: datetime) -> None:
        if environment.pk not in self._pruned:
            self._pruned.add(environment.pk)
            _prune_offline_instances(environment=environment, now=now)


def instance_checkin(
    *, token: AccessToken, checkin: CheckIn, now: datetime | None = None, batch: CheckinBatch | None = None
) -> LiveInstance | None:
    """Record what one process of a LIVE instance reports; return its instance (``None`` after a goodbye of an
    instance never seen).

    The instance is the application on its host (``checkin.instance_id``, shared by its processes); the
    process is ``checkin.process_id``. A periodic check-in of a known process that runs what it ran costs one
    small UPDATE of its row. A new process, a change of versions, mode or pins, or of the instance's name,
    host or token takes the full path (one transaction, the instance row locked). A goodbye marks the
    process gone at once; the instance's other processes stay.

    When every live process of the instance that follows a set runs the environment's current version of
    it, an acknowledgement (``release.acknowledge``) is audited for that release, once per instance. The
    versions the process reports in ``applied`` are acknowledged too, for the release that put each of them
    live, even when a newer release has superseded it since (see :func:`_record_applied`).

    ``now`` is when the check-in arrived (the batch writer records it a moment later); default: now. ``batch``:
    the reads shared with the other check-ins recorded with this one (:class:`CheckinBatch`); default: its own.
    """
    now = now or timezone.now()
    batch = batch or CheckinBatch()
    if checkin.goodbye:
        instance = _process_goodbye(token=token, checkin=checkin, now=now, batch=batch)
    else:
        process = _known_process(environment_id=token.environment_id, checkin=checkin)
        if process is not None and _process_touch(process=process, token=token, checkin=checkin, now=now):
            instance = process.instance
        else:
            instance = _process_register_retrying(token=token, checkin=checkin, now=now, batch=batch)
    if instance is not None and checkin.applied:
        _record_applied(instance=instance, token=token, applied=checkin.applied, now=now)
    if instance is not None and checkin.signals:
        _record_signals([(token.environment_id, instance.pk, checkin, now)])
    return instance


def _record_signals(items: list[tuple[int, int, CheckIn, datetime]]) -> None:
    """Add the check-ins' ``signals`` to their releases' counters (in a savepoint: a failure loses only them)."""
    from anvil_forge.health.services import release_signals_record

    try:
        with transaction.atomic():
            release_signals_record(items=items)
    except Exception:
        logger.exception("the signals of %d check-in(s) could not be recorded", len(items))


def instance_checkins_record(*, checkins: list[tuple[AccessToken, CheckIn, datetime]]) -> None:
    """Record many check-ins at once (the batch writer's call): ``(token, check-in, when it arrived)`` each.

    One transaction for the batch. The known processes of the batch are read in one query; those whose
    check-in changes nothing that counts (the periodic check-in of almost every process) are written with one
    upsert of their rows; the others take :func:`instance_checkin`'s full path, each in a savepoint so a
    failing one does not undo the rest. Several check-ins of one process in a batch: the writer keeps the
    newest (with the ``applied`` versions of all, and their ``signals`` summed). The ``signals`` are added to
    their releases' counters (:func:`anvil_forge.health.services.release_signals_record`: one upsert per
    release, instance and minute).
    """
    if not checkins:
        return
    with transaction.atomic():
        known = _known_processes([(token.environment_id, checkin) for token, checkin, _ in checkins])
        touched: list[LiveProcess] = []
        signals: list[tuple[int, int, CheckIn, datetime]] = []
        full: list[tuple[AccessToken, CheckIn, datetime]] = []
        for token, checkin, now in checkins:
            process = known.get((token.environment_id, checkin.instance_id, checkin.process_id))
            if checkin.goodbye or checkin.applied or process is None or not _touchable(process, token, checkin, now):
                full.append((token, checkin, now))
                continue
            process.last_seen_at = now
            process.expires_at = now + timedelta(seconds=checkin.gone_after_seconds)
            process.client_version = checkin.client_version
            process.usage = checkin.usage
            touched.append(process)
            if checkin.signals:
                signals.append((token.environment_id, process.instance_id, checkin, now))
        if touched:
            LiveProcess.objects.bulk_create(
                touched,
                update_conflicts=True,
                unique_fields=["instance", "process_id"],
                update_fields=["last_seen_at", "expires_at", "client_version", "usage"],
            )
        if signals:
            _record_signals(signals)
        batch = CheckinBatch()
        for token, checkin, now in full:
            try:
                with transaction.atomic():
                    instance_checkin(token=token, checkin=checkin, now=now, batch=batch)
            except Exception:
                logger.exception(
                    "check-in of instance %s process %s could not be recorded", checkin.instance_id, checkin.process_id
                )


def _known_processes(keys: list[tuple[int, CheckIn]]) -> dict[tuple[int, str, int], LiveProcess]:
    """The processes of ``keys`` (environment id, check-in) that exist, by (environment id, instance id, pid)."""
    found: dict[tuple[int, str, int], LiveProcess] = {}
    wanted = {(environment_id, checkin.instance_id, checkin.process_id) for environment_id, checkin in keys}
    by_environment: dict[int, set[str]] = {}
    for environment_id, instance_id, _ in wanted:
        by_environment.setdefault(environment_id, set()).add(instance_id)
    for environment_id, instance_ids in by_environment.items():
        ids = sorted(instance_ids)
        for start in range(0, len(ids), 500):  # SQLite allows a few hundred parameters per query
            rows = LiveProcess.objects.select_related("instance").filter(
                instance__environment_id=environment_id, instance__instance_id__in=ids[start : start + 500]
            )
            for process in rows:
                key = (environment_id, process.instance.instance_id, process.process_id)
                if key in wanted:
                    found[key] = process
    return found


def _process_register_retrying(
    *, token: AccessToken, checkin: CheckIn, now: datetime, batch: CheckinBatch
) -> LiveInstance:
    try:
        return _process_register(token=token, checkin=checkin, now=now, batch=batch)  # its own transaction
    except IntegrityError:
        # Two first check-ins of one instance or process raced; the other created the row, so this is an update.
        return _process_register(token=token, checkin=checkin, now=now, batch=batch)


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
    if not _touchable(process, token, checkin, now):
        return False
    fields: dict[str, Any] = {"last_seen_at": now, "expires_at": now + timedelta(seconds=checkin.gone_after_seconds)}
    if process.client_version != checkin.client_version:
        fields["client_version"] = checkin.client_version
    if process.usage != checkin.usage:
        fields["usage"] = checkin.usage
    return LiveProcess.objects.filter(pk=process.pk).update(**fields) == 1


def _touchable(process: LiveProcess, token: AccessToken, checkin: CheckIn, now: datetime) -> bool:
    """Whether the check-in changes nothing but the process's last-seen time, client version and usage."""
    instance = process.instance
    return not (
        process.versions != checkin.versions
        or process.pins != checkin.pins
        or process.mode != checkin.mode
        or process.expires_at <= now  # aged out (perhaps pruned): the full path counts it in again
        or instance.name != checkin.name
        or instance.host != checkin.host
        or instance.token_id != token.pk
    )


def _process_register(*, token: AccessToken, checkin: CheckIn, now: datetime, batch: CheckinBatch) -> LiveInstance:
    environment = token.environment
    with transaction.atomic():
        instance = (
            LiveInstance.objects.select_for_update()
            .filter(environment=environment, instance_id=checkin.instance_id)
            .first()
        )
        own = {"project": token.project, "token": token, "name": checkin.name, "host": checkin.host}
        created = instance is None
        if instance is None:
            batch.prune_offline_instances(environment, now)
            instance = LiveInstance.objects.create(
                environment=environment, instance_id=checkin.instance_id, last_seen_at=now, **own
            )
        elif any(getattr(instance, key) != value for key, value in own.items()):
            for key, value in own.items():
                setattr(instance, key, value)
            instance.last_seen_at = now
            instance.save(update_fields=[*own, "last_seen_at"])
        # A new instance has no processes yet: nothing to read, nothing aged out to delete.
        process = None
        if not created:
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
            if not created:  # a process joins: the rows of the instance's processes that aged out or said goodbye go
                LiveProcess.objects.filter(instance=instance, expires_at__lte=now).delete()
            LiveProcess.objects.create(instance=instance, process_id=checkin.process_id, first_seen_at=now, **fields)
        else:
            LiveProcess.objects.filter(pk=process.pk).update(**fields)
        project_changed(token.project_id, "instance.checkin")  # open pages show the instance's new state
        newly_running = {slug for slug, number in checkin.versions.items() if previous.get(slug) != number}
        if newly_running:
            _record_acknowledgements(instance=instance, token=token, slugs=newly_running, now=now, batch=batch)
    return instance


def _process_goodbye(
    *, token: AccessToken, checkin: CheckIn, now: datetime, batch: CheckinBatch
) -> LiveInstance | None:
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
        project_changed(token.project_id, "instance.goodbye")
        if process.versions or process.pins:
            slugs = set(process.versions) | set(process.pins)
            _record_acknowledgements(instance=instance, token=token, slugs=slugs, now=now, batch=batch)
    return instance


def _prune_offline_instances(*, environment: Environment, now: datetime) -> None:
    """Delete the environment's instances offline for longer than ``OFFLINE_RETENTION`` (with their processes)."""
    retained = LiveInstance.objects.filter(environment=environment).retained(now=now).values("pk")
    LiveInstance.objects.filter(environment=environment).exclude(pk__in=retained).delete()


def _record_acknowledgements(
    *, instance: LiveInstance, token: AccessToken, slugs: set[str], now: datetime, batch: CheckinBatch
) -> None:
    """Audit ``release.acknowledge`` for each set in ``slugs`` whose current release every live process of the
    instance that follows the set now runs, unless the instance acknowledged that release before."""
    current = {
        release.prompt_set.slug: release
        for release in batch.current_releases(token.environment)  # the instance's: it is the token's environment
        if release.prompt_set.slug in slugs
    }
    if not current:
        return
    # Whether every instance now runs them (``release.acknowledged``) is judged after the commit, off this thread.
    from anvil_forge.webhooks.acknowledged import check_after_commit

    check_after_commit([release.pk for release in current.values()])
    live = list(LiveProcess.objects.live(now=now).filter(instance=instance))
    for slug, release in sorted(current.items()):
        number = release.version.number
        following = [process for process in live if slug in process.versions or slug in process.pins]
        if not following or any(process.versions.get(slug) != number for process in following):
            continue
        if _acknowledged(release, instance):
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


def _acknowledged(release: Release, instance: LiveInstance) -> bool:
    return AuditEvent.objects.filter(
        action="release.acknowledge",
        object_type=Release._meta.label_lower,
        object_id=str(release.pk),
        data__instance_id=instance.instance_id,
    ).exists()


def _record_applied(
    *, instance: LiveInstance, token: AccessToken, applied: dict[str, tuple[int, ...]], now: datetime
) -> None:
    """Audit ``release.acknowledge`` for the releases a process reports it applied, once per instance and release.

    The release of an applied version is the newest release of that version of the set in the environment
    published by ``now`` (when the check-in arrived). A release that is still current is left to
    :func:`_record_acknowledgements` (every live process of the instance must run it); one superseded since
    counts the instance as soon as one of its processes applied it: it cannot be asked to run it any more.
    """
    environment = instance.environment
    candidates = (
        Release.objects.filter(
            environment=environment,
            prompt_set__slug__in=list(applied),
            published_at__lte=now,
            version__number__in=sorted({number for numbers in applied.values() for number in numbers}),
        )
        .select_related("prompt_set", "version")
        .order_by("id")
    )
    releases: dict[tuple[str, int], Release] = {}
    for release in candidates:
        releases[(release.prompt_set.slug, release.version.number)] = release  # the newest wins
    if not releases:
        return
    from anvil_forge.distribution.selectors import current_release_ids

    current = set(current_release_ids(environment_id=environment.pk))
    for slug, numbers in sorted(applied.items()):
        for number in numbers:
            release = releases.get((slug, number))
            if release is None or release.pk in current or _acknowledged(release, instance):
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
                    "processes": 1,
                    "set": slug,
                    "version": number,
                    "environment": environment.slug,
                    "token": token.prefix,
                    "superseded": True,
                },
            )


def _user_or_none(actor: Any) -> Any:
    return actor if getattr(actor, "pk", None) is not None else None

"""Reads of the distribution app.

Selectors named ``*_for(*, actor, ...)`` are for people (the web UI) and only return what the actor's
organisations hold. The token-scoped reads (``current_releases``, ``release_for_set``...) serve the LIVE
API, whose caller is already bound to one project and environment by its token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Max, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from anvil_forge.accounts.models import Membership, Organisation
from anvil_forge.accounts.permissions import Capability, SystemActor, require
from anvil_forge.audit.models import AuditEvent
from anvil_forge.distribution.models import AccessToken, InstanceMode, LiveInstance, Release
from anvil_forge.prompts.models import Environment, Project, PromptSet, PromptSetVersion

# Clients check in every CHECKIN_INTERVAL_SECONDS; one not seen for QUIET_AFTER_INTERVALS of them is "quiet".
CHECKIN_INTERVAL_SECONDS = 60
QUIET_AFTER_INTERVALS = 3


def _release_related(releases: QuerySet[Release]) -> QuerySet[Release]:
    return releases.select_related(
        "prompt_set__project__organisation",
        "environment",
        "version__created_by",
        "version__reviewed_by",
        "version__prompt_set__project__organisation",
        "published_by",
    )


def current_releases(*, environment: Environment) -> list[Release]:
    """The current (newest) release of each prompt set in ``environment``, ordered by set slug."""
    newest = (
        Release.objects.filter(environment=environment)
        .values("prompt_set_id")
        .annotate(newest=Max("id"))
        .values("newest")
    )
    releases = _release_related(Release.objects.filter(id__in=newest))
    return sorted(releases, key=lambda release: release.prompt_set.slug)


def current_release_ids(*, environment_id: int) -> list[int]:
    """The ids of the current releases in an environment, oldest first (what a stream replays on connect)."""
    newest = (
        Release.objects.filter(environment_id=environment_id)
        .values("prompt_set_id")
        .annotate(newest=Max("id"))
        .values_list("newest", flat=True)
    )
    return sorted(newest)


def release_with_related(release_id: int) -> Release | None:
    """One release with everything its bundle and stream event need."""
    return _release_related(Release.objects.filter(pk=release_id)).first()


def newest_release_id(*, environment: Environment | None = None) -> int:
    releases = Release.objects.all() if environment is None else Release.objects.filter(environment=environment)
    return releases.aggregate(newest=Max("id"))["newest"] or 0


def recent_release_ids(*, since: datetime) -> list[tuple[int, int]]:
    """``(release id, environment id)`` of the releases published since ``since`` (the safety net's look-back)."""
    return list(Release.objects.filter(published_at__gte=since).order_by("id").values_list("id", "environment_id"))


def prompt_set_in(*, project: Project, slug: str) -> PromptSet | None:
    return PromptSet.objects.filter(project=project, slug=slug).first()


def version_of(*, prompt_set: PromptSet, number: int) -> PromptSetVersion | None:
    return (
        PromptSetVersion.objects.select_related("prompt_set__project__organisation", "created_by", "reviewed_by")
        .filter(prompt_set=prompt_set, number=number)
        .first()
    )


def newest_release_of(*, environment: Environment, prompt_set: PromptSet, version: PromptSetVersion | None = None):
    """The newest release of ``prompt_set`` in ``environment`` (of ``version`` when given), or ``None``."""
    releases = Release.objects.filter(environment=environment, prompt_set=prompt_set)
    if version is not None:
        releases = releases.filter(version=version)
    return _release_related(releases).order_by("-id").first()


def bundle_key_row(
    *, environment_id: int, project_id: int, set_slug: str, number: int | None = None
) -> tuple[int | None, int, str, datetime | None] | None:
    """``(release id, version id, version state, reviewed_at)`` of the bundle the LIVE API would serve, or ``None``.

    Without ``number``: the newest release of the set in the environment. With it: version ``number`` of the set
    and its newest release there (``None`` when never released). One narrow query without the snapshot, so a
    conditional GET can be answered from the bundle cache; ``None`` means the caller takes the full path
    (which also produces the 404s). Servability of a version is the caller's check.
    """
    if number is None:
        rows = Release.objects.filter(
            environment_id=environment_id, prompt_set__project_id=project_id, prompt_set__slug=set_slug
        ).order_by("-id")
        row = rows.values_list("id", "version_id", "version__state", "version__reviewed_at")[:1]
    else:
        newest = Release.objects.filter(environment_id=environment_id, version_id=OuterRef("pk")).order_by("-id")
        row = (
            PromptSetVersion.objects.filter(prompt_set__project_id=project_id, prompt_set__slug=set_slug, number=number)
            .annotate(release_id=Subquery(newest.values("id")[:1]))
            .values_list("release_id", "id", "state", "reviewed_at")[:1]
        )
    found = list(row)
    return found[0] if found else None


def acknowledgements_for(*, release: Release) -> QuerySet[AuditEvent]:
    """The instances that acknowledged ``release`` (audit events ``release.acknowledge``), newest first.

    Each event's ``data`` has ``instance_id``, ``instance``, ``host``, ``set``, ``version``, ``environment``.
    Only call it for a release the viewer may see (the live publish page has checked that already).
    """
    return AuditEvent.objects.filter(
        action="release.acknowledge", object_type=Release._meta.label_lower, object_id=str(release.pk)
    ).order_by("-created_at", "-id")


def _organisation_ids(actor: Any) -> Any:
    if isinstance(actor, SystemActor):
        return Organisation.objects.values("id")
    if actor is None or not getattr(actor, "is_authenticated", False) or getattr(actor, "pk", None) is None:
        return Organisation.objects.none().values("id")
    return Membership.objects.filter(user=actor).values("organisation_id")


def instances_for(
    *, actor: Any, organisation: Organisation | None = None, project: Project | None = None
) -> QuerySet[LiveInstance]:
    """The LIVE instances the actor may see (their organisations), optionally of one organisation or project."""
    instances = LiveInstance.objects.filter(project__organisation_id__in=_organisation_ids(actor)).select_related(
        "project__organisation", "environment", "token"
    )
    if organisation is not None:
        instances = instances.filter(project__organisation=organisation)
    if project is not None:
        instances = instances.filter(project=project)
    return instances.order_by("project__organisation__slug", "project__slug", "environment__slug", "name")


def tokens_for(*, actor: Any, project: Project) -> QuerySet[AccessToken]:
    """The project's ACCESS_TOKENs (active and revoked, newest first). Only for who may manage tokens."""
    require(actor, project.organisation, Capability.MANAGE_TOKENS, what=f"project {project}")
    return AccessToken.objects.filter(project=project).select_related("environment", "created_by", "revoked_by")


@dataclass
class SetDistribution:
    """Where one prompt set stands in one environment."""

    prompt_set: PromptSet
    environment: Environment
    release: Release | None
    version: int | None  # the current release's version number
    running: int = 0  # instances running the current version
    behind: int = 0  # running an older version (or none) while accepting
    frozen: int = 0
    pinned: int = 0
    quiet: int = 0  # not seen for more than QUIET_AFTER_INTERVALS check-in intervals
    total: int = 0
    versions: dict[int, int] = field(default_factory=dict)  # version number -> instances (not quiet)


def distribution_state(*, actor: Any, project: Project, now: datetime | None = None) -> list[SetDistribution]:
    """Per prompt set and environment of ``project``: the current release and how the instances stand.

    An instance counts in exactly one of ``running``, ``behind``, ``frozen``, ``pinned`` or ``quiet``
    (quiet first, then pinned, then frozen), and in ``versions`` when it is not quiet. Ordered by set slug,
    then environment.
    """
    require(actor, project.organisation, Capability.VIEW, what=f"project {project}")
    now = now or timezone.now()
    quiet_before = now - timedelta(seconds=CHECKIN_INTERVAL_SECONDS * QUIET_AFTER_INTERVALS)
    environments = list(Environment.objects.filter(project=project).order_by("id"))
    sets = list(PromptSet.objects.filter(project=project).order_by("slug"))
    current = {
        (release.prompt_set_id, release.environment_id): release
        for environment in environments
        for release in current_releases(environment=environment)
    }
    instances_by_env: dict[int, list[LiveInstance]] = {}
    for instance in LiveInstance.objects.filter(project=project):
        instances_by_env.setdefault(instance.environment_id, []).append(instance)
    state: list[SetDistribution] = []
    for prompt_set in sets:
        for environment in environments:
            release = current.get((prompt_set.pk, environment.pk))
            row = SetDistribution(
                prompt_set=prompt_set,
                environment=environment,
                release=release,
                version=release.version.number if release else None,
            )
            for instance in instances_by_env.get(environment.pk, []):
                running = instance.versions.get(prompt_set.slug)
                if running is None and prompt_set.slug not in instance.pins:
                    continue  # this instance does not follow the set
                row.total += 1
                if instance.last_seen_at < quiet_before:
                    row.quiet += 1
                    continue
                if running is not None:
                    row.versions[running] = row.versions.get(running, 0) + 1
                if prompt_set.slug in instance.pins:
                    row.pinned += 1
                elif instance.mode == InstanceMode.FROZEN:
                    row.frozen += 1
                elif row.version is not None and running == row.version:
                    row.running += 1
                else:
                    row.behind += 1
            state.append(row)
    return state


def publish_warnings(*, version: PromptSetVersion, environment: Environment, now: datetime | None = None) -> list[str]:
    """Warnings to show before publishing ``version`` to ``environment`` (empty when there is nothing to say).

    Connected instances (seen within the quiet limit) that follow the set report the prompt ids and variable
    names their application used. Warned about: an id they used that the version lacks (and that no other
    set live in the environment provides), and a required parameter without a default that they never pass.
    """
    now = now or timezone.now()
    quiet_before = now - timedelta(seconds=CHECKIN_INTERVAL_SECONDS * QUIET_AFTER_INTERVALS)
    set_slug = version.prompt_set.slug
    prompts = {p["id"]: p for p in version.snapshot.get("prompts", [])}
    instances = LiveInstance.objects.filter(environment=environment, last_seen_at__gte=quiet_before).filter(
        Q(versions__has_key=set_slug) | Q(pins__has_key=set_slug)
    )
    elsewhere = {
        p["id"]
        for release in current_releases(environment=environment)
        if release.prompt_set_id != version.prompt_set_id
        for p in release.version.snapshot.get("prompts", [])
    }
    missing: dict[str, set[str]] = {}
    unpassed: dict[tuple[str, str], set[str]] = {}
    for instance in instances:
        for used_id, variables in (instance.usage or {}).items():
            owner, _, prompt_id = used_id.rpartition(":")
            if owner and owner != set_slug:
                continue
            prompt = prompts.get(prompt_id)
            if prompt is None:
                if owner or prompt_id not in elsewhere:
                    missing.setdefault(prompt_id, set()).add(instance.name)
                continue
            passed = set(variables)
            for parameter in prompt.get("parameters", []):
                if parameter.get("required") and parameter.get("default") is None and parameter["name"] not in passed:
                    unpassed.setdefault((prompt_id, parameter["name"]), set()).add(instance.name)
    warnings = [
        f"Version {version.number} has no prompt {prompt_id!r}, which {_names(names)} used."
        for prompt_id, names in sorted(missing.items())
    ]
    warnings += [
        f"Prompt {prompt_id!r} in version {version.number} requires the variable {name!r}, "
        f"which {_names(names)} did not pass."
        for (prompt_id, name), names in sorted(unpassed.items())
    ]
    return warnings


def _names(names: set[str]) -> str:
    ordered = sorted(names)
    if len(ordered) == 1:
        return f"instance {ordered[0]}"
    shown = ", ".join(ordered[:3])
    more = f" and {len(ordered) - 3} more" if len(ordered) > 3 else ""
    return f"instances {shown}{more}"

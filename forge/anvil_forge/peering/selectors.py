"""Reads of the peering app: the peer API's scoped queries, and the Forges pages' peers and references.

The peer API's reads take the authenticated ``peer`` token and never reach past its project. The pages'
reads take the acting user and the organisation, as every selector does (``accounts.permissions``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Q, QuerySet

from anvil_forge.accounts.models import Membership, Organisation
from anvil_forge.accounts.permissions import Capability, require
from anvil_forge.core.exceptions import NotFound
from anvil_forge.distribution.models import AccessToken, Release
from anvil_forge.peering.config import configured_peers
from anvil_forge.peering.models import Peer, PeerSource, RemoteProjectReference, SetSource
from anvil_forge.prompts.models import Environment, Project, PromptSet, PromptSetVersion, VersionState

logger = logging.getLogger("anvil_forge.peering")


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if moment else None


# The peer API (scoped by token) ---------------------------------------------------------------------------


def peer_api_projects(*, token: AccessToken) -> QuerySet[Project]:
    """The projects a peer token may see: its own project (one row, kept as a query for pagination)."""
    return Project.objects.filter(pk=token.project_id).select_related("organisation").order_by("pk")


def peer_api_project(*, token: AccessToken, organisation_slug: str, project_slug: str) -> Project:
    """The token's project when the slugs name it; :class:`NotFound` for every other project, existing or not."""
    project = token.project
    if project.organisation.slug != organisation_slug or project.slug != project_slug:
        raise NotFound("not found")
    return project


def peer_api_sets(*, project: Project) -> QuerySet[PromptSet]:
    """The project's prompt sets that have at least one approved version, with the newest approved one."""
    approved = Q(versions__state=VersionState.APPROVED)
    return (
        PromptSet.objects.filter(project=project)
        .annotate(latest_approved=Max("versions__number", filter=approved), approved_count=Count("versions", approved))
        .filter(approved_count__gt=0)
        .order_by("slug")
    )


def peer_api_set(*, project: Project, slug: str) -> PromptSet:
    prompt_set = peer_api_sets(project=project).filter(slug=slug).first()
    if prompt_set is None:
        raise NotFound("not found")
    return prompt_set


def peer_api_versions(*, prompt_set: PromptSet) -> QuerySet[PromptSetVersion]:
    """The set's approved versions, newest first."""
    return (
        PromptSetVersion.objects.filter(prompt_set=prompt_set, state=VersionState.APPROVED)
        .select_related("created_by", "reviewed_by", "prompt_set__project__organisation")
        .order_by("-number")
    )


def peer_api_version(*, prompt_set: PromptSet, number: int) -> PromptSetVersion:
    version = peer_api_versions(prompt_set=prompt_set).filter(number=number).first()
    if version is None:
        raise NotFound("not found")
    return version


def release_of(*, version: PromptSetVersion, environment: Environment) -> Release | None:
    """The newest release of exactly ``version`` in ``environment`` (its publication there), if any."""
    return (
        Release.objects.filter(environment=environment, version=version)
        .select_related("published_by")
        .order_by("-id")
        .first()
    )


def describe_project(project: Project) -> dict[str, Any]:
    return {
        "organisation": project.organisation.slug,
        "organisation_name": project.organisation.name,
        "project": project.slug,
        "name": project.name,
        "description": project.description,
    }


def describe_set(prompt_set: PromptSet) -> dict[str, Any]:
    return {
        "set": prompt_set.slug,
        "name": prompt_set.name,
        "description": prompt_set.description,
        "latest_version": prompt_set.latest_approved,  # type: ignore[attr-defined]
        "approved_versions": prompt_set.approved_count,  # type: ignore[attr-defined]
    }


def describe_version(version: PromptSetVersion) -> dict[str, Any]:
    prompts = version.snapshot.get("prompts", [])
    return {
        "version": version.number,
        "digest": version.digest,
        "created_at": _iso(version.created_at),
        "created_by": version.created_by.get_username() if version.created_by else None,
        "approved_at": _iso(version.reviewed_at),
        "approved_by": version.reviewed_by.get_username() if version.reviewed_by else None,
        "prompt_count": len(prompts),
        "prompt_ids": [p.get("id") for p in prompts][:200],
    }


# The Forges pages (scoped by actor) -----------------------------------------------------------------------


def peers_for(*, actor: Any, organisation: Organisation) -> QuerySet[Peer]:
    """The peers ``organisation``'s members browse: its own, and those from ``ANVIL_PEERS``."""
    require(actor, organisation, Capability.VIEW, what=f"organisation {organisation.slug}")
    names = settings_peers_sync()
    return (
        Peer.objects.filter(Q(organisation=organisation) | Q(organisation__isnull=True, name__in=names))
        .select_related("organisation")
        .order_by("name", "organisation_id")
    )


def peer_get(*, actor: Any, organisation: Organisation, name: str) -> Peer:
    """One peer by name; the organisation's own peer wins over a settings peer of the same name."""
    peers = [p for p in peers_for(actor=actor, organisation=organisation) if p.name == name]
    if not peers:
        raise NotFound(f"No peer FORGE named {name} was found.")
    return sorted(peers, key=lambda p: p.organisation_id is None)[0]


def references_for(*, actor: Any, organisation: Organisation) -> QuerySet[RemoteProjectReference]:
    require(actor, organisation, Capability.VIEW, what=f"organisation {organisation.slug}")
    return RemoteProjectReference.objects.filter(organisation=organisation).select_related("peer")


def reference_get(*, actor: Any, organisation: Organisation, reference_id: int) -> RemoteProjectReference:
    reference = references_for(actor=actor, organisation=organisation).filter(pk=reference_id).first()
    if reference is None:
        raise NotFound("No such connected project was found.")
    return reference


def set_sources_for(*, actor: Any, organisation: Organisation) -> QuerySet[SetSource]:
    """The organisation's prompt sets that were copied from peers, with where from."""
    require(actor, organisation, Capability.VIEW, what=f"organisation {organisation.slug}")
    return SetSource.objects.filter(prompt_set__project__organisation=organisation).select_related(
        "prompt_set__project"
    )


def set_source_for(*, actor: Any, prompt_set: PromptSet) -> SetSource | None:
    """Where ``prompt_set`` was copied from (``None`` when it was not copied from a peer)."""
    require(actor, prompt_set.project.organisation, Capability.VIEW, what="prompt set")
    return SetSource.objects.filter(prompt_set=prompt_set).select_related("peer").first()


def copied_set_get(*, actor: Any, set_id: int) -> tuple[PromptSet, SetSource | None]:
    """A prompt set by id, looked for only in the organisations ``actor`` is a member of, and where it was copied
    from (``None`` when it was not copied from a peer).

    Any other id, existing or not, is the same :class:`NotFound`, which names nothing: an address carrying a
    bare id must not tell a stranger which organisation, project or set the id belongs to, or that it exists.
    """
    prompt_set = None
    if getattr(actor, "is_authenticated", False) and getattr(actor, "pk", None) is not None:
        member_of = Membership.objects.filter(user_id=actor.pk).values("organisation_id")
        prompt_set = (
            PromptSet.objects.select_related("project__organisation")
            .filter(pk=set_id, project__organisation__in=member_of)
            .first()
        )
    if prompt_set is None:
        raise NotFound("No such prompt set was found.")
    return prompt_set, set_source_for(actor=actor, prompt_set=prompt_set)


def provenance_for_submission(*, prompt_set: PromptSet, digest: str) -> dict[str, Any] | None:
    """The provenance to keep on a version about to be made from ``prompt_set`` with content ``digest``.

    For ``prompts.services.prompt_set_submit``: when the set was copied from a peer and its content is
    still exactly a copied remote version (same content digest), the new version records where it came
    from: ``{"peer", "url", "organisation", "project", "set", "version", "digest"}``. ``None`` otherwise
    (edited after the copy, or never copied).
    """
    source = SetSource.objects.filter(prompt_set=prompt_set).first()
    if source is None:
        return None
    copy = source.copies.filter(content_digest=digest).order_by("-copied_at", "-id").first()
    if copy is None:
        return None
    return source.provenance(version=copy.remote_version, digest=copy.content_digest)


def version_provenance(version: PromptSetVersion) -> dict[str, Any] | None:
    """Where a local version came from: its own ``provenance``, or (for a version made before the submit
    service recorded it) the copy whose digest it carries."""
    if version.provenance:
        return version.provenance
    return provenance_for_submission(prompt_set=version.prompt_set, digest=version.digest)


# Peers from ANVIL_PEERS -----------------------------------------------------------------------------------


def settings_peers_sync() -> list[str]:
    """Make sure each peer of ``ANVIL_PEERS`` has its row (references point at it); return their names.

    The configuration is the source of truth: rows are created or updated to match it, and rows of peers no
    longer configured are left alone (their references keep their last copy) but no longer offered.
    """
    configured = configured_peers()
    existing = {p.name: p for p in Peer.objects.filter(organisation__isnull=True)}
    for entry in configured:
        peer = existing.get(entry.name)
        if peer is None:
            try:
                with transaction.atomic():
                    Peer.objects.create(
                        organisation=None,
                        name=entry.name,
                        url=entry.url,
                        source=PeerSource.SETTINGS,
                        token_env=entry.token_env,
                    )
            except IntegrityError:  # another process made it first
                pass
        elif peer.url != entry.url or peer.token_env != entry.token_env:
            Peer.objects.filter(pk=peer.pk).update(url=entry.url, token_env=entry.token_env)
    return [entry.name for entry in configured]

"""Writes of the peering app: peers, connected remote projects, copies of remote versions, and peer reads.

Network calls to a peer happen outside any transaction (a slow peer must not hold a database lock); what
they bring back is then written in one transaction with its audit event. Every read of a peer records the
peer's health (reachable, token valid, last checked, last error) as a side note, not as an audited change.
Peer failures surface as :class:`~anvil_forge.peering.client.PeerError` with a message a person can act on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from anvil_client.bundle import Bundle, canonical_json, content_digest, normalise_prompt
from anvil_forge.accounts.models import Organisation
from anvil_forge.accounts.permissions import Capability, SystemActor, require
from anvil_forge.audit.services import audit_record
from anvil_forge.core.exceptions import ApplicationError, Conflict, NotFound, PermissionDenied
from anvil_forge.core.validation import validate_slug
from anvil_forge.peering import throttle
from anvil_forge.peering.client import Page, PeerClient, PeerError
from anvil_forge.peering.config import NAME_PATTERN, url_problem
from anvil_forge.peering.crypto import decrypt_token, encrypt_token
from anvil_forge.peering.models import Peer, PeerCopy, PeerSource, RemoteProjectReference, SetSource
from anvil_forge.prompts import services as prompt_services
from anvil_forge.prompts.models import Project, PromptSet, SetStatus

logger = logging.getLogger("anvil_forge.peering")

TOKEN_PATTERN = re.compile(r"^anvil_peer_[A-Za-z0-9_-]{20,200}$")
PREFIX_LENGTH = len("anvil_peer_") + 6
MAX_SNAPSHOT_SETS = 200
SNAPSHOT_BUDGET_FACTOR = 3


# Peers -----------------------------------------------------------------------------------------------------


def peer_create(
    *,
    actor: Any,
    organisation: Organisation,
    name: str,
    url: str,
    token: str,
    source: str = PeerSource.INTERFACE,
) -> Peer:
    """Add a peer FORGE to ``organisation`` (owners and admins). The token is stored encrypted, never shown."""
    require(actor, organisation, Capability.MANAGE_PEERS, what=f"organisation {organisation.slug}")
    name = _check_name(name)
    url = _check_url(url)
    token = _check_token(token)
    with transaction.atomic():
        if Peer.objects.filter(organisation=organisation, name=name).exists():
            raise Conflict(f"{organisation.slug} already has a peer named {name}; remove it first or choose another.")
        try:
            peer = Peer.objects.create(
                organisation=organisation,
                name=name,
                url=url,
                source=source,
                token_encrypted=encrypt_token(token),
                token_prefix=token[:PREFIX_LENGTH],
                created_by=_user(actor),
            )
        except IntegrityError as exc:  # a racing add of the same name
            raise Conflict(f"{organisation.slug} already has a peer named {name}.") from exc
        audit_record(
            actor=actor,
            action="peer.create",
            obj=peer,
            organisation=organisation,
            data={"name": name, "url": url, "token_prefix": peer.token_prefix, "source": source},
        )
    return peer


def peer_token_replace(*, actor: Any, peer: Peer, token: str) -> Peer:
    """Give a peer a new token (the old one was revoked or expired); the health is checked again later."""
    organisation = _own_organisation(peer, "replace its token")
    require(actor, organisation, Capability.MANAGE_PEERS, what=f"peer {peer.name}")
    token = _check_token(token)
    with transaction.atomic():
        locked = Peer.objects.select_for_update().get(pk=peer.pk)
        old_prefix = locked.token_prefix
        locked.token_encrypted = encrypt_token(token)
        locked.token_prefix = token[:PREFIX_LENGTH]
        locked.token_valid = None
        locked.last_error = ""
        locked.save(update_fields=["token_encrypted", "token_prefix", "token_valid", "last_error"])
        audit_record(
            actor=actor,
            action="peer.token_replace",
            obj=locked,
            organisation=organisation,
            data={"name": locked.name, "old_prefix": old_prefix, "new_prefix": locked.token_prefix},
        )
    return locked


def peer_remove(*, actor: Any, peer: Peer) -> None:
    """Remove an organisation's peer and its connected projects. Copied sets keep their provenance."""
    organisation = _own_organisation(peer, "remove it")
    require(actor, organisation, Capability.MANAGE_PEERS, what=f"peer {peer.name}")
    with transaction.atomic():
        references = RemoteProjectReference.objects.filter(peer=peer).count()
        audit_record(
            actor=actor,
            action="peer.remove",
            obj=peer,
            organisation=organisation,
            data={"name": peer.name, "url": peer.url, "token_prefix": peer.token_prefix, "references": references},
        )
        Peer.objects.filter(pk=peer.pk).delete()


def peer_check(*, actor: Any, peer: Peer, organisation: Organisation) -> Peer:
    """The connection test: ask the peer for its projects and record its health. Never raises for the peer.

    Any member may start it, so it counts against the peer's read budget (``peering.throttle``): past it, the
    health recorded by the last read is the answer. The console (``anvil-forge peer check``) always asks.
    """
    require(actor, organisation, Capability.VIEW, what=f"peer {peer.name}")
    _require_peer_of(peer, organisation)
    if isinstance(actor, SystemActor) or throttle.read_budget.take(peer.pk):
        with contextlib.suppress(PeerError):  # the outcome is recorded on the peer by the client
            peer_client(peer).projects(page=1, per_page=1)
    peer.refresh_from_db()
    return peer


def peer_client(peer: Peer) -> _RecordingClient:
    """A client for ``peer`` whose every call records the peer's health."""
    try:
        if peer.is_from_settings:
            token = _settings_token(peer)
        else:
            token = decrypt_token(peer.token_encrypted, peer_name=peer.name)
    except ApplicationError as exc:  # no usable token: as good as a refused one, and shown the same way
        error = exc if isinstance(exc, PeerError) else PeerError(exc.message, kind="token_refused")
        _record_health(peer, error)
        raise error from exc
    return _RecordingClient(peer, token)


class _RecordingClient(PeerClient):
    """A :class:`PeerClient` that writes the outcome of each request to the peer's health fields."""

    def __init__(self, peer: Peer, token: str) -> None:
        super().__init__(peer.url, token, name=peer.name)
        self.peer = peer

    def projects(self, **kwargs: Any) -> Page:
        return self._recorded(super().projects, **kwargs)

    def sets(self, *args: Any, **kwargs: Any) -> Page:
        return self._recorded(super().sets, *args, **kwargs)

    def versions(self, *args: Any, **kwargs: Any) -> Page:
        return self._recorded(super().versions, *args, **kwargs)

    def bundle(self, *args: Any, **kwargs: Any) -> Bundle:
        return self._recorded(super().bundle, *args, **kwargs)

    def _recorded(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one read of the peer, recording its outcome (after parsing: garbage counts as a failure)."""
        try:
            result = call(*args, **kwargs)
        except PeerError as exc:
            _record_health(self.peer, exc)
            logger.info("peer %s: %s", self.peer.name, exc.message)
            raise
        _record_health(self.peer, None)
        return result


def _record_health(peer: Peer, error: PeerError | None) -> None:
    now = timezone.now()
    if error is None or error.kind == "not_found":  # a 404 is a healthy answer: only the object was missing
        fields = {"reachable": True, "token_valid": True, "last_error": ""}
    else:
        fields = {
            "reachable": error.reachable,
            "token_valid": False if error.kind == "token_refused" else (None if not error.reachable else True),
            "last_error": error.message,
        }
    Peer.objects.filter(pk=peer.pk).update(last_checked_at=now, **fields)
    for key, value in {**fields, "last_checked_at": now}.items():
        setattr(peer, key, value)


def _settings_token(peer: Peer) -> str:
    token = os.environ.get(peer.token_env, "").strip()
    if not token:
        raise PeerError(
            f"Peer {peer.name} comes from ANVIL_PEERS, but its token variable {peer.token_env} is not set on this "
            "FORGE.",
            kind="token_refused",
        )
    return token


# Browsing (reads of a peer) ---------------------------------------------------------------------------------


# These serve the pages, so each counts against the peer's read budget (``peering.throttle``); past it, the
# page gets the last answer to the same read, or a message saying to try again shortly.


def peer_projects(*, actor: Any, organisation: Organisation, peer: Peer, page: int = 1) -> Page:
    _require_browse(actor, organisation, peer)
    return _page_read(peer, ("projects", page), lambda client: client.projects(page=page))


def peer_sets(*, actor: Any, organisation: Organisation, peer: Peer, remote_organisation: str,
              remote_project: str, page: int = 1) -> Page:
    _require_browse(actor, organisation, peer)
    return _page_read(peer, ("sets", remote_organisation, remote_project, page),
                      lambda client: client.sets(remote_organisation, remote_project, page=page))


def peer_versions(*, actor: Any, organisation: Organisation, peer: Peer, remote_organisation: str,
                  remote_project: str, remote_set: str, page: int = 1) -> Page:
    _require_browse(actor, organisation, peer)
    return _page_read(peer, ("versions", remote_organisation, remote_project, remote_set, page),
                      lambda client: client.versions(remote_organisation, remote_project, remote_set, page=page))


def peer_bundle(*, actor: Any, organisation: Organisation, peer: Peer, remote_organisation: str,
                remote_project: str, remote_set: str, version: int) -> Bundle:
    _require_browse(actor, organisation, peer)
    return _page_read(peer, ("bundle", remote_organisation, remote_project, remote_set, version),
                      lambda client: client.bundle(remote_organisation, remote_project, remote_set, version))


def _page_read(peer: Peer, read: tuple[Any, ...], call: Callable[[_RecordingClient], Any]) -> Any:
    """One read of ``peer`` for a page: live while the peer's read budget lasts, else the last answer to it."""
    key = (peer.pk, peer.url, peer.token_prefix, peer.token_env, *read)  # a new URL or token: a new answer
    if not throttle.read_budget.take(peer.pk):
        cached = throttle.answers.get(key)
        if cached is None:
            raise PeerError(
                f"Peer {peer.name} was read many times in the last minute; try again in a few seconds.",
                kind="limited",
            )
        return cached.unwrap()
    try:
        result = call(peer_client(peer))
    except PeerError as exc:
        throttle.answers.put(key, throttle.Answer(error=exc))
        raise
    throttle.answers.put(key, throttle.Answer(value=result))
    return result


# Connected remote projects (read-only references) -----------------------------------------------------------


def remote_project_connect(
    *, actor: Any, organisation: Organisation, peer: Peer, remote_organisation: str, remote_project: str
) -> RemoteProjectReference:
    """Connect a peer's project as a read-only reference. The peer must answer now (to have something to show)."""
    require(actor, organisation, Capability.EDIT, what=f"organisation {organisation.slug}")
    _require_peer_of(peer, organisation)
    validate_slug(remote_organisation, what="remote organisation")
    validate_slug(remote_project, what="remote project")
    snapshot = _fetch_snapshot(peer, remote_organisation, remote_project)
    with transaction.atomic():
        if RemoteProjectReference.objects.filter(
            organisation=organisation, peer=peer, remote_organisation=remote_organisation, remote_project=remote_project
        ).exists():
            raise Conflict(f"{remote_organisation}/{remote_project} of {peer.name} is already connected.")
        now = timezone.now()
        reference = RemoteProjectReference.objects.create(
            organisation=organisation,
            peer=peer,
            remote_organisation=remote_organisation,
            remote_project=remote_project,
            name=snapshot["project"].get("name") or remote_project,
            snapshot=snapshot,
            snapshot_at=now,
            last_refresh_at=now,
            created_by=_user(actor),
        )
        audit_record(
            actor=actor,
            action="peer.project_connect",
            obj=reference,
            organisation=organisation,
            data={"peer": peer.name, "organisation": remote_organisation, "project": remote_project},
        )
    return reference


def remote_project_refresh(*, actor: Any, reference: RemoteProjectReference) -> RemoteProjectReference:
    """Refresh a connected project's snapshot from its peer; on failure keep the last copy and say why."""
    require(actor, reference.organisation, Capability.VIEW, what="connected project")
    if not throttle.read_budget.take(reference.peer_id):  # the snapshot kept is the last answer
        return reference
    now = timezone.now()
    try:
        snapshot = _fetch_snapshot(reference.peer, reference.remote_organisation, reference.remote_project)
    except ApplicationError as exc:
        RemoteProjectReference.objects.filter(pk=reference.pk).update(last_refresh_at=now, last_error=exc.message)
        reference.last_refresh_at, reference.last_error = now, exc.message
        return reference
    RemoteProjectReference.objects.filter(pk=reference.pk).update(
        snapshot=snapshot, snapshot_at=now, last_refresh_at=now, last_error="",
        name=snapshot["project"].get("name") or reference.remote_project,
    )
    reference.refresh_from_db()
    return reference


def remote_project_disconnect(*, actor: Any, reference: RemoteProjectReference) -> None:
    organisation = reference.organisation
    require(actor, organisation, Capability.EDIT, what="connected project")
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="peer.project_disconnect",
            obj=reference,
            organisation=organisation,
            data={
                "peer": reference.peer.name,
                "organisation": reference.remote_organisation,
                "project": reference.remote_project,
            },
        )
        RemoteProjectReference.objects.filter(pk=reference.pk).delete()


def _fetch_snapshot(peer: Peer, remote_organisation: str, remote_project: str) -> dict[str, Any]:
    """What a connected project shows: the project, its sets, and the prompts of each set's newest version.

    Bounded as a whole, not only per request: at most ``SNAPSHOT_BUDGET_FACTOR`` times the peer timeout in
    all (a peer answering each request just in time cannot hold a page for minutes), and at most the peer
    size limit of prompts kept (sets past it are listed without their prompts).
    """
    client = peer_client(peer)
    deadline = time.monotonic() + client.timeout * SNAPSHOT_BUDGET_FACTOR
    kept_bytes = 0
    project: dict[str, Any] | None = None
    page: int | None = 1
    while page is not None and project is None:  # the token's projects: normally one page of one
        result = client.projects(page=page, per_page=100)
        wanted = (remote_organisation, remote_project)
        project = next((p for p in result.items if (p.get("organisation"), p.get("project")) == wanted), None)
        page = result.next_page if result.next_page and result.next_page > page else None
    if project is None:
        raise NotFound(f"Peer {peer.name} shows no project {remote_organisation}/{remote_project} to this FORGE.")
    sets: list[dict[str, Any]] = []
    page = 1
    while page is not None and len(sets) < MAX_SNAPSHOT_SETS:
        result = client.sets(remote_organisation, remote_project, page=page, per_page=100)
        for item in result.items:
            slug, latest = item.get("set"), item.get("latest_version")
            if not isinstance(slug, str) or not isinstance(latest, int):
                raise PeerError(f"Peer {peer.name} listed a set without a slug or version.", kind="garbage")
            if time.monotonic() > deadline:
                raise PeerError(
                    f"Peer {peer.name} took longer than {client.timeout * SNAPSHOT_BUDGET_FACTOR:g} s in all to "
                    "show the project; try again later.",
                    kind="timeout",
                )
            bundle = client.bundle(remote_organisation, remote_project, slug, latest)
            prompts = [dict(p) for p in bundle.raw["prompts"]]
            kept_bytes += len(canonical_json(prompts))
            sets.append(
                {
                    "set": slug,
                    "name": str(item.get("name") or slug)[:200],
                    "description": str(item.get("description") or "")[:2000],
                    "latest_version": latest,
                    "digest": bundle.content_digest,
                    "approved_at": bundle.raw.get("approved_at"),
                    "approved_by": bundle.raw.get("approved_by"),
                    "prompts": prompts if kept_bytes <= client.max_bytes else [],
                    "prompts_omitted": kept_bytes > client.max_bytes,
                }
            )
        page = result.next_page if result.next_page and result.next_page > page else None
    return {
        "project": {
            "organisation": remote_organisation,
            "project": remote_project,
            "name": str(project.get("name") or remote_project)[:200],
            "description": str(project.get("description") or "")[:2000],
        },
        "sets": sets,
    }


# Copy into my project -------------------------------------------------------------------------------------


def remote_version_copy(
    *,
    actor: Any,
    peer: Peer,
    remote_organisation: str,
    remote_project: str,
    remote_set: str,
    version: int,
    project: Project,
    set_slug: str | None = None,
) -> PromptSet:
    """Copy approved version ``version`` of a peer's set into ``project``, LIVE, for local review.

    The first copy from a (peer URL, organisation, project, set) makes a new prompt set (``set_slug``, by
    default the remote set's slug); later copies from the same source replace the content of that set (a LOCKED
    set is reopened; a set in review is refused), so submitting it makes its next version. Provenance (peer,
    remote project, set, version, digest) is kept on the set's :class:`SetSource` and each :class:`PeerCopy`,
    and goes onto the version made from it (``peering.selectors.provenance_for_submission``).
    """
    organisation = project.organisation
    require(actor, organisation, Capability.EDIT, what=f"project {project}")
    _require_peer_of(peer, organisation)
    bundle = peer_client(peer).bundle(remote_organisation, remote_project, remote_set, version)
    prompts = [normalise_prompt(p) for p in bundle.raw["prompts"]]
    if not prompts:
        raise ApplicationError(f"Version {version} of {remote_set} on {peer.name} has no prompts; nothing to copy.")
    with transaction.atomic():
        source = (
            SetSource.objects.select_related("prompt_set")
            .filter(
                prompt_set__project=project,
                peer_url=peer.url,
                remote_organisation=remote_organisation,
                remote_project=remote_project,
                remote_set=remote_set,
            )
            .first()
        )
        if source is None:
            prompt_set = _copy_as_new_set(actor, project, set_slug or remote_set, bundle, prompts, peer)
            source = SetSource.objects.create(
                prompt_set=prompt_set,
                peer=peer,
                peer_name=peer.name,
                peer_url=peer.url,
                remote_organisation=remote_organisation,
                remote_project=remote_project,
                remote_set=remote_set,
                copied_version=version,
                copied_digest=bundle.content_digest,
            )
            created = True
        else:
            prompt_set = _copy_into_existing_set(actor, source.prompt_set, prompts, peer, version)
            source.peer, source.peer_name = peer, peer.name
            source.copied_version, source.copied_digest = version, bundle.content_digest
            source.save(update_fields=["peer", "peer_name", "copied_version", "copied_digest"])
            created = False
        PeerCopy.objects.create(
            source=source,
            remote_version=version,
            content_digest=bundle.content_digest,
            bundle_digest=bundle.digest,
            copied_by=_user(actor),
            copied_by_label=actor.get_username(),
        )
        audit_record(
            actor=actor,
            action="peer.copy",
            obj=prompt_set,
            organisation=organisation,
            project=project,
            data={**source.provenance(version=version, digest=bundle.content_digest), "new_set": created},
        )
    return prompt_set


def _copy_as_new_set(
    actor: Any, project: Project, slug: str, bundle: Bundle, prompts: list[dict[str, Any]], peer: Peer
) -> PromptSet:
    validate_slug(slug, what="prompt set")
    if PromptSet.objects.filter(project=project, slug=slug).exists():
        raise Conflict(
            f"{project} already has a prompt set named {slug} that was not copied from this source; "
            "choose another name for the copy.",
            {"field": "set_slug"},
        )
    prompt_set = prompt_services.prompt_set_create(
        actor=actor,
        project=project,
        slug=slug,
        name=f"{bundle.set} (from {peer.name})"[:200],
        description=f"Copied from {bundle.organisation}/{bundle.project}/{bundle.set} v{bundle.version} on {peer.name}",
    )
    for prompt in prompts:
        prompt_services.prompt_create(
            actor=actor,
            prompt_set=prompt_set,
            key=prompt["id"],
            template=prompt["template"],
            description=prompt["description"],
            parameters=prompt["parameters"],
            metadata=prompt["metadata"],
        )
    return PromptSet.objects.get(pk=prompt_set.pk)


def _copy_into_existing_set(
    actor: Any, prompt_set: PromptSet, prompts: list[dict[str, Any]], peer: Peer, version: int
) -> PromptSet:
    prompt_set = PromptSet.objects.select_for_update().get(pk=prompt_set.pk)
    if prompt_set.status == SetStatus.REVIEW:
        raise Conflict(
            f"{prompt_set.slug} is in review; approve it or request changes before copying version {version} "
            f"from {peer.name} into it."
        )
    current = _set_content(prompt_set)
    if content_digest(current) == content_digest(prompts):
        raise Conflict(f"{prompt_set.slug} already has exactly the content of version {version} from {peer.name}.")
    if prompt_set.status == SetStatus.LOCKED:
        prompt_services.prompt_set_reopen(actor=actor, prompt_set=prompt_set)
    wanted = {p["id"]: p for p in prompts}
    for existing in list(prompt_set.prompts.all()):
        if existing.key not in wanted:
            prompt_services.prompt_delete(actor=actor, prompt=existing, base_revision=existing.revision)
    for existing in list(prompt_set.prompts.all()):
        new = wanted.pop(existing.key)
        old = normalise_prompt(
            {"id": existing.key, "template": existing.template, "description": existing.description,
             "parameters": existing.parameters, "metadata": existing.metadata}
        )
        if old != new:
            prompt_services.prompt_update(
                actor=actor,
                prompt=existing,
                base_revision=existing.revision,
                template=new["template"],
                description=new["description"],
                parameters=new["parameters"],
                metadata=new["metadata"],
            )
    for new in wanted.values():
        prompt_services.prompt_create(
            actor=actor,
            prompt_set=prompt_set,
            key=new["id"],
            template=new["template"],
            description=new["description"],
            parameters=new["parameters"],
            metadata=new["metadata"],
        )
    return PromptSet.objects.get(pk=prompt_set.pk)


def _set_content(prompt_set: PromptSet) -> list[dict[str, Any]]:
    return sorted(
        (
            normalise_prompt(
                {"id": p.key, "template": p.template, "description": p.description,
                 "parameters": p.parameters, "metadata": p.metadata}
            )
            for p in prompt_set.prompts.all()
        ),
        key=lambda p: p["id"],
    )


# Upstream: is there a newer approved version on the peer? -------------------------------------------------


def set_upstream_check(*, actor: Any, source: SetSource) -> SetSource:
    """Ask the peer for the newest approved version of the set ``source`` copies; record it (or why not)."""
    prompt_set = source.prompt_set
    require(actor, prompt_set.project.organisation, Capability.VIEW, what="prompt set")
    if source.peer_id is not None and not throttle.read_budget.take(source.peer_id):
        return source  # what the last check recorded
    now = timezone.now()
    try:
        peer = source.peer
        if peer is None:
            raise ApplicationError(f"Peer {source.peer_name} was removed from this FORGE; add it again to follow it.")
        newest = peer_client(peer).versions(source.remote_organisation, source.remote_project, source.remote_set,
                                            page=1, per_page=1).items
        if not newest or not isinstance(newest[0].get("version"), int):
            raise ApplicationError(f"Peer {peer.name} shows no approved version of {source.remote_set} any more.")
        fields = {
            "upstream_version": newest[0]["version"],
            "upstream_digest": str(newest[0].get("digest") or "")[:71],
            "upstream_checked_at": now,
            "upstream_error": "",
        }
    except ApplicationError as exc:
        fields = {"upstream_checked_at": now, "upstream_error": exc.message}
    SetSource.objects.filter(pk=source.pk).update(**fields)
    for key, value in fields.items():
        setattr(source, key, value)
    return source


def current_content(prompt_set: PromptSet) -> list[dict[str, Any]]:
    """The set's prompts now, normalised as bundles and snapshots carry them (for diffs)."""
    return _set_content(prompt_set)


# Checks --------------------------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME_PATTERN.match(name):
        raise ApplicationError(
            f"{name!r} is not a valid peer name: use lowercase letters, digits, - and _ (at most 64).",
            {"field": "name"},
        )
    return name


def _check_url(url: str) -> str:
    url = (url or "").strip().rstrip("/")
    problem = url_problem(url)
    if problem:
        raise ApplicationError(f"The peer URL {problem}.", {"field": "url"})
    return url


def _check_token(token: str) -> str:
    token = (token or "").strip()
    if token.startswith("anvil_live_"):
        raise ApplicationError(
            "That is a live token (anvil_live_…); a peer needs a peer token (anvil_peer_…) made on the other FORGE "
            "with `anvil-forge token create ORG/PROJECT --environment ENV --kind peer --name NAME`.",
            {"field": "token"},
        )
    if not TOKEN_PATTERN.match(token):
        raise ApplicationError(
            "That is not a peer token: it starts with anvil_peer_ and was printed once when it was made.",
            {"field": "token"},
        )
    return token


def _own_organisation(peer: Peer, doing: str) -> Organisation:
    if peer.organisation is None:
        raise PermissionDenied(
            f"Peer {peer.name} comes from the ANVIL_PEERS setting; change that setting to {doing}."
        )
    return peer.organisation


def _require_peer_of(peer: Peer, organisation: Organisation) -> None:
    if peer.organisation_id not in (None, organisation.pk):
        raise NotFound(f"No peer FORGE named {peer.name} was found.")


def _require_browse(actor: Any, organisation: Organisation, peer: Peer) -> None:
    require(actor, organisation, Capability.VIEW, what=f"peer {peer.name}")
    _require_peer_of(peer, organisation)


def _user(actor: Any) -> Any:
    from django.db import models

    return actor if isinstance(actor, models.Model) else None

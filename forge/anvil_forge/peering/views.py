"""The Forges pages: peers and their health, browsing a peer, connected projects, copies and their updates.

Views authorise, parse, call a selector or service and render. A peer failure (slow, down, garbage, too
large, token refused) is shown on the page as a message; it never turns a local page into an error page.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from anvil_forge.accounts.models import Membership, Organisation
from anvil_forge.accounts.permissions import Capability, can
from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.peering import selectors, services
from anvil_forge.peering.client import PeerError
from anvil_forge.peering.models import Peer, SetSource
from anvil_forge.prompts import selectors as prompt_selectors
from anvil_forge.prompts.models import PromptSet
from anvil_forge.web.access import organisation_get
from anvil_forge.web.context_processors import SESSION_ORGANISATION


def _current_organisation(request: HttpRequest, org: str | None) -> Organisation:
    if org:
        return organisation_get(request, org)
    memberships = Membership.objects.filter(user=request.user).select_related("organisation")
    wanted = request.session.get(SESSION_ORGANISATION)
    chosen = next((m for m in memberships if m.organisation.slug == wanted), None) or memberships.first()
    if chosen is None:
        raise Http404("You are not a member of any organisation.")
    return chosen.organisation


def _base(request: HttpRequest, organisation: Organisation, **extra: Any) -> dict[str, Any]:
    return {
        "organisation": organisation,
        "can_manage_peers": can(request.user, organisation, Capability.MANAGE_PEERS),
        "can_edit": can(request.user, organisation, Capability.EDIT),
        "nav_section": "forges",
        **extra,
    }


def _peer(request: HttpRequest, organisation: Organisation, name: str) -> Peer:
    return selectors.peer_get(actor=request.user, organisation=organisation, name=name)


@login_required
@require_GET
def peer_list(request: HttpRequest, org: str | None = None) -> HttpResponse:
    organisation = _current_organisation(request, org)
    return render(request, "peering/peer_list.html", _list_context(request, organisation))


def _list_context(request: HttpRequest, organisation: Organisation, **extra: Any) -> dict[str, Any]:
    return _base(
        request,
        organisation,
        peers=list(selectors.peers_for(actor=request.user, organisation=organisation)),
        references=list(selectors.references_for(actor=request.user, organisation=organisation)),
        copies=list(selectors.set_sources_for(actor=request.user, organisation=organisation)),
        **extra,
    )


@login_required
@require_POST
def peer_add(request: HttpRequest, org: str) -> HttpResponse:
    organisation = _current_organisation(request, org)
    try:
        peer = services.peer_create(
            actor=request.user,
            organisation=organisation,
            name=request.POST.get("name", ""),
            url=request.POST.get("url", ""),
            token=request.POST.get("token", ""),
        )
    except ApplicationError as exc:
        context = _list_context(
            request, organisation, add_error=exc.message,
            add_form={"name": request.POST.get("name", ""), "url": request.POST.get("url", "")},
        )
        return render(request, "peering/peer_list.html", context, status=exc.status_code)
    peer = services.peer_check(actor=request.user, peer=peer, organisation=organisation)
    if peer.health == "ok":
        messages.success(request, f"Peer {peer.name} added; it answers and accepts the token.")
    else:
        messages.warning(request, f"Peer {peer.name} added, but the connection test failed: {peer.last_error}")
    return redirect("peering:peer_detail", org=organisation.slug, peer=peer.name)


@login_required
@require_GET
def peer_detail(request: HttpRequest, org: str, peer: str) -> HttpResponse:
    organisation = _current_organisation(request, org)
    found = _peer(request, organisation, peer)
    page_number = _page_number(request)
    projects, error = None, None
    try:
        projects = services.peer_projects(actor=request.user, organisation=organisation, peer=found, page=page_number)
    except PeerError as exc:
        error = exc.message
    except ApplicationError as exc:  # e.g. a token that can no longer be decrypted
        error = exc.message
    return render(
        request,
        "peering/peer_detail.html",
        _base(request, organisation, peer=found, projects=projects, peer_error=error),
    )


@login_required
@require_POST
def peer_check(request: HttpRequest, org: str, peer: str) -> HttpResponse:
    organisation = _current_organisation(request, org)
    found = _peer(request, organisation, peer)
    try:
        found = services.peer_check(actor=request.user, peer=found, organisation=organisation)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("peering:peer_list_org", org=organisation.slug)
    if found.health == "ok":
        messages.success(request, f"{found.name}: reachable, token accepted.")
    else:
        messages.error(request, f"{found.name}: {found.last_error}")
    back = request.POST.get("next", "")
    if not back.startswith("/") or not url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        back = reverse("peering:peer_list_org", args=[organisation.slug])
    return HttpResponseRedirect(back)  # an address, never a view name: redirect("x") would try reverse("x")


@login_required
@require_POST
def peer_token(request: HttpRequest, org: str, peer: str) -> HttpResponse:
    organisation = _current_organisation(request, org)
    found = _peer(request, organisation, peer)
    services.peer_token_replace(actor=request.user, peer=found, token=request.POST.get("token", ""))
    found = services.peer_check(actor=request.user, peer=found, organisation=organisation)
    messages.success(request, f"The token of {found.name} was replaced.")
    return redirect("peering:peer_detail", org=organisation.slug, peer=found.name)


@login_required
@require_POST
def peer_remove(request: HttpRequest, org: str, peer: str) -> HttpResponse:
    organisation = _current_organisation(request, org)
    found = _peer(request, organisation, peer)
    services.peer_remove(actor=request.user, peer=found)
    messages.success(request, f"Peer {found.name} was removed.")
    return redirect("peering:peer_list_org", org=organisation.slug)


@login_required
@require_GET
def remote_project(request: HttpRequest, org: str, peer: str, rorg: str, rproject: str) -> HttpResponse:
    organisation = _current_organisation(request, org)
    found = _peer(request, organisation, peer)
    sets, error = None, None
    try:
        sets = services.peer_sets(
            actor=request.user, organisation=organisation, peer=found, remote_organisation=rorg,
            remote_project=rproject, page=_page_number(request),
        )
    except ApplicationError as exc:
        error = exc.message
    reference = (
        selectors.references_for(actor=request.user, organisation=organisation)
        .filter(peer=found, remote_organisation=rorg, remote_project=rproject)
        .first()
    )
    return render(
        request,
        "peering/remote_project.html",
        _base(request, organisation, peer=found, rorg=rorg, rproject=rproject, sets=sets, peer_error=error,
              reference=reference),
    )


@login_required
@require_POST
def remote_connect(request: HttpRequest, org: str, peer: str, rorg: str, rproject: str) -> HttpResponse:
    organisation = _current_organisation(request, org)
    found = _peer(request, organisation, peer)
    try:
        reference = services.remote_project_connect(
            actor=request.user, organisation=organisation, peer=found, remote_organisation=rorg,
            remote_project=rproject,
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("peering:remote_project", org=organisation.slug, peer=found.name, rorg=rorg, rproject=rproject)
    messages.success(request, f"Connected {rorg}/{rproject} from {found.name} as a read-only reference.")
    return redirect("peering:reference_detail", org=organisation.slug, reference=reference.pk)


@login_required
@require_GET
def remote_set(request: HttpRequest, org: str, peer: str, rorg: str, rproject: str, rset: str) -> HttpResponse:
    organisation = _current_organisation(request, org)
    found = _peer(request, organisation, peer)
    versions, error = None, None
    try:
        versions = services.peer_versions(
            actor=request.user, organisation=organisation, peer=found, remote_organisation=rorg,
            remote_project=rproject, remote_set=rset, page=_page_number(request),
        )
    except ApplicationError as exc:
        error = exc.message
    return render(
        request,
        "peering/remote_set.html",
        _base(request, organisation, peer=found, rorg=rorg, rproject=rproject, rset=rset, versions=versions,
              peer_error=error),
    )


@login_required
@require_GET
def remote_version(
    request: HttpRequest, org: str, peer: str, rorg: str, rproject: str, rset: str, number: int
) -> HttpResponse:
    organisation = _current_organisation(request, org)
    found = _peer(request, organisation, peer)
    bundle, error = None, None
    try:
        bundle = services.peer_bundle(
            actor=request.user, organisation=organisation, peer=found, remote_organisation=rorg,
            remote_project=rproject, remote_set=rset, version=number,
        )
    except ApplicationError as exc:
        error = exc.message
    projects = list(prompt_selectors.projects_for(actor=request.user, organisation=organisation))
    return render(
        request,
        "peering/remote_version.html",
        _base(request, organisation, peer=found, rorg=rorg, rproject=rproject, rset=rset, number=number,
              bundle=bundle, prompts=bundle.raw["prompts"] if bundle else [], peer_error=error, projects=projects),
    )


@login_required
@require_POST
def remote_copy(
    request: HttpRequest, org: str, peer: str, rorg: str, rproject: str, rset: str, number: int
) -> HttpResponse:
    organisation = _current_organisation(request, org)
    found = _peer(request, organisation, peer)
    back = reverse("peering:remote_version", args=[organisation.slug, found.name, rorg, rproject, rset, number])
    try:
        project = prompt_selectors.project_get(
            actor=request.user, organisation_slug=organisation.slug, project_slug=request.POST.get("project", "")
        )
        prompt_set = services.remote_version_copy(
            actor=request.user, peer=found, remote_organisation=rorg, remote_project=rproject, remote_set=rset,
            version=number, project=project, set_slug=(request.POST.get("set_slug") or "").strip() or None,
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    messages.success(
        request,
        f"Copied version {number} of {rset} from {found.name} into {prompt_set.project.slug}/{prompt_set.slug}. "
        "It is LIVE: submit it for review when it is ready.",
    )
    return redirect(_set_url(prompt_set))


@login_required
@require_GET
def reference_detail(request: HttpRequest, org: str, reference: int) -> HttpResponse:
    organisation = _current_organisation(request, org)
    found = selectors.reference_get(actor=request.user, organisation=organisation, reference_id=reference)
    found = services.remote_project_refresh(actor=request.user, reference=found)
    return render(request, "peering/reference_detail.html", _base(request, organisation, reference=found))


@login_required
@require_POST
def reference_disconnect(request: HttpRequest, org: str, reference: int) -> HttpResponse:
    organisation = _current_organisation(request, org)
    found = selectors.reference_get(actor=request.user, organisation=organisation, reference_id=reference)
    services.remote_project_disconnect(actor=request.user, reference=found)
    messages.success(request, f"Disconnected {found.remote_organisation}/{found.remote_project}.")
    return redirect("peering:peer_list_org", org=organisation.slug)


@login_required
@require_GET
def set_upstream(request: HttpRequest, set_id: int) -> HttpResponse:
    """The "newer version on the peer" notice for a copied set (an htmx fragment; empty for other sets)."""
    prompt_set, source = _set_and_source(request, set_id)
    if source is not None:
        source = services.set_upstream_check(actor=request.user, source=source)
    return render(request, "peering/_upstream_status.html", {"prompt_set": prompt_set, "source": source})


@login_required
@require_GET
def set_upstream_diff(request: HttpRequest, set_id: int) -> HttpResponse:
    """The copied set now against the peer's newest approved version, with "copy this version" at hand."""
    from anvil_forge.web.diffing import snapshot_diff  # the same diff as the versions page shows

    prompt_set, source = _set_and_source(request, set_id)
    if source is None:
        raise Http404("This prompt set was not copied from a peer.")
    organisation = prompt_set.project.organisation
    source = services.set_upstream_check(actor=request.user, source=source)
    diff, error = None, source.upstream_error or None
    if not error and source.peer is not None and source.upstream_version:
        try:
            bundle = services.peer_bundle(
                actor=request.user, organisation=organisation, peer=source.peer,
                remote_organisation=source.remote_organisation, remote_project=source.remote_project,
                remote_set=source.remote_set, version=source.upstream_version,
            )
            diff = snapshot_diff(
                {"prompts": services.current_content(prompt_set)}, {"prompts": [dict(p) for p in bundle.raw["prompts"]]}
            )
        except ApplicationError as exc:
            error = exc.message
    return render(
        request,
        "peering/upstream_diff.html",
        _base(request, organisation, prompt_set=prompt_set, source=source, diff=diff, peer_error=error,
              set_url=_set_url(prompt_set)),
    )


def _set_and_source(request: HttpRequest, set_id: int) -> tuple[PromptSet, SetSource | None]:
    # Scoped by the user's organisations first: a bare id must not name (or even confirm) another tenant's set.
    return selectors.copied_set_get(actor=request.user, set_id=set_id)


def _set_url(prompt_set: PromptSet) -> str:
    """The local set page (engineer D's) when it exists, else the project page."""
    project = prompt_set.project
    for name, args in (
        ("web:prompt_set", [project.organisation.slug, project.slug, prompt_set.slug]),
        ("web:project", [project.organisation.slug, project.slug]),
    ):
        try:
            return reverse(name, args=args)
        except NoReverseMatch:  # the page may not exist (yet)
            continue
    return reverse("peering:peer_list")


def _page_number(request: HttpRequest) -> int:
    value = request.GET.get("page", "1")
    return int(value) if value.isdigit() and 0 < int(value) < 100_000 else 1

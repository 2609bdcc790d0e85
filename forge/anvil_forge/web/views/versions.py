"""Versions: the list, the side-by-side diff, rollback, publishing and the live acknowledgements."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from anvil_forge.core.exceptions import ApplicationError, NotFound
from anvil_forge.distribution.models import Release
from anvil_forge.distribution.selectors import (
    acknowledgement_details,
    acknowledgement_ids,
    counted,
    distribution_state,
    instance_states,
    instances_for,
    publish_warnings,
    set_standings,
)
from anvil_forge.prompts import selectors, services
from anvil_forge.prompts.models import Environment, PromptSetVersion, VersionState
from anvil_forge.prompts.rollback import (
    approval_of,
    rollback_environment,
    rollback_refusal,
    rollback_target_ids,
    rollback_targets,
)
from anvil_forge.web.access import Place, place_get
from anvil_forge.web.diffing import snapshot_diff

VERSION_PAGE_SIZE = 50
ACK_PAGE_SIZE = 50
PROMPT_PAGE_SIZE = 100  # a version's prompts, a page
CHANGE_PAGE_SIZE = 100  # a diff's changed prompts, a page
PUBLISH_SAMPLE = 20
RELEASE_STATES = ("applied", "waiting", "refusing", "offline")
STATE_WORDS = {"applied": "applied", "waiting": "waiting", "refusing": "not taking it", "offline": "offline"}


def publish_targets(
    version: PromptSetVersion, environments: list[Environment], live_numbers: dict[int, int]
) -> list[Environment]:
    """The environments ``version`` may be published to: approved (or in review where an environment takes
    versions in review) and newer than what is live there. ``live_numbers``: environment pk → live number."""
    targets = []
    for environment in environments:
        current = live_numbers.get(environment.pk)
        publishable = (
            version.state == VersionState.APPROVED
            or (version.state == VersionState.IN_REVIEW and environment.accepts_review_versions)
        ) and (current is None or current < version.number)
        if publishable:
            targets.append(environment)
    return targets


@login_required
def version_list(request: HttpRequest, org: str, project: str, prompt_set: str) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    return _version_page(request, place)


def _version_page(request: HttpRequest, place: Place, *, status: int = 200, error: str = "") -> HttpResponse:
    page = Paginator(
        selectors.version_summaries_for(actor=request.user, prompt_set=place.prompt_set), VERSION_PAGE_SIZE
    ).get_page(request.GET.get("page"))
    versions = list(page.object_list)
    # One read of the distribution state gives the environments, what is live in each, and who runs what.
    states = distribution_state(actor=request.user, project=place.project, prompt_set=place.prompt_set)
    environments = [state.environment for state in states]
    live: dict[int, list] = {}
    running: dict[int, list[tuple[str, int]]] = {}
    for state in states:
        if state.version is not None:
            live.setdefault(state.version, []).append(state.environment)
        for number, count in sorted(state.versions.items()):
            running.setdefault(number, []).append((state.environment.slug, count))
    newest = place.prompt_set.versions.order_by("-number").values_list("number", flat=True).first() or 0
    live_numbers = {env.pk: n for n, envs in live.items() for env in envs}
    rollback_to: dict[int, list] = {}
    if "publish" in place.caps:
        for environment in environments:
            for target_id in rollback_target_ids(prompt_set=place.prompt_set, environment=environment):
                rollback_to.setdefault(target_id, []).append(environment)
    rows = []
    for version in versions:
        rows.append(
            {
                "version": version,
                "live_in": live.get(version.number, []),
                "running": running.get(version.number, []),
                "publish_to": publish_targets(version, environments, live_numbers),
                "approval": approval_of(version),
                "rollback_to": rollback_to.get(version.pk, []),
            }
        )
    return render(
        request,
        "web/versions.html",
        {**place.context(), "rows": rows, "error": error, "newest": newest, "page": page},
        status=status,
    )


@login_required
def version_detail(request: HttpRequest, org: str, project: str, prompt_set: str, number: int) -> HttpResponse:
    """One version's prompts as they were snapshotted (templates, parameters, metadata)."""
    place = place_get(request, org, project, prompt_set)
    version = selectors.version_get(actor=request.user, prompt_set=place.prompt_set, number=number)
    page = Paginator(version.snapshot.get("prompts", []), PROMPT_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "web/version.html",
        {
            **place.context(),
            "version": version,
            "approval": approval_of(version),
            "prompts": page.object_list,
            "page": page,
            "page_size": PROMPT_PAGE_SIZE,
            "crumb": f"Version {version.number}",
        },
    )


@login_required
def version_diff(request: HttpRequest, org: str, project: str, prompt_set: str) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    numbers = list(  # the newest two: the default comparison
        selectors.versions_for(actor=request.user, prompt_set=place.prompt_set).values_list("number", flat=True)[:2]
    )
    a = _number(request.GET.get("a"), default=numbers[1] if len(numbers) > 1 else (numbers[0] if numbers else 0))
    b = _number(request.GET.get("b"), default=numbers[0] if numbers else 0)
    old = selectors.version_get(actor=request.user, prompt_set=place.prompt_set, number=a) if a else None
    new = selectors.version_get(actor=request.user, prompt_set=place.prompt_set, number=b) if b else None
    if new is None:
        raise NotFound(f"{place.prompt_set.slug} has no versions yet.")
    diff = snapshot_diff(old.snapshot if old else None, new.snapshot)
    page = Paginator(diff.changes, CHANGE_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "web/diff.html",
        {
            **place.context(),
            "old": old,
            "new": new,
            "diff": diff,
            "page": page,
            "old_label": f"v{old.number}" if old else "nothing",
            "new_label": f"v{new.number}",
            "newest": numbers[0],
        },
    )


@login_required
def version_rollback(
    request: HttpRequest, org: str, project: str, prompt_set: str, number: int, environment: str
) -> HttpResponse:
    """GET: the confirmation (the diff from what is live back to version ``number``). POST: make and publish."""
    place = place_get(request, org, project, prompt_set)
    version = selectors.version_get(actor=request.user, prompt_set=place.prompt_set, number=number)
    target = selectors.environment_get(actor=request.user, project=place.project, slug=environment)
    error, status = "", 200
    if request.method == "POST":
        try:
            release = rollback_environment(
                actor=request.user, prompt_set=place.prompt_set, number=version.number, environment=target
            )
        except ApplicationError as exc:
            error, status = exc.message, exc.status_code
        else:
            messages.success(
                request,
                f"Rolled {target.slug} back to version {number}'s content: made version {release.version.number} "
                f"and published it.",
            )
            return redirect("web:release", org, project, prompt_set, release.pk)
    current = selectors.current_release(environment=target, prompt_set=place.prompt_set)
    allowed = version.pk in rollback_target_ids(prompt_set=place.prompt_set, environment=target)
    if not allowed and not error:
        error = rollback_refusal(place.prompt_set, version, target)  # said on the page; nothing was asked yet
    newest = selectors.version_summaries_for(actor=request.user, prompt_set=place.prompt_set).first()
    return render(
        request,
        "web/rollback.html",
        {
            **place.context(),
            "version": version,
            "approval": approval_of(version),
            "environment": target,
            "current": current,
            "allowed": allowed,
            "next_number": (newest.number if newest else 0) + 1,
            "diff": snapshot_diff(current.version.snapshot if current else None, version.snapshot),
            "error": error,
        },
        status=status,
    )


@login_required
def version_publish(
    request: HttpRequest, org: str, project: str, prompt_set: str, number: int, environment: str
) -> HttpResponse:
    """GET: the confirmation (diff against what is live, who will take it, warnings). POST: publish."""
    place = place_get(request, org, project, prompt_set)
    version = selectors.version_get(actor=request.user, prompt_set=place.prompt_set, number=number)
    target = selectors.environment_get(actor=request.user, project=place.project, slug=environment)
    error, status = "", 200
    if request.method == "POST":
        try:
            release = services.version_publish(actor=request.user, version=version, environment=target)
        except ApplicationError as exc:
            error, status = exc.message, exc.status_code
        else:
            return redirect("web:release", org, project, prompt_set, release.pk)
    current = selectors.current_release(environment=target, prompt_set=place.prompt_set)
    slug = place.prompt_set.slug
    instances = counted(instances_for(actor=request.user, project=place.project, environment=target))
    # Against no version: every accepting instance is "behind".
    standings = set_standings(instances, slug=slug, numbers={}, now=timezone.now())
    groups: dict[str, list[int]] = {"takers": [], "refusers": [], "offline": []}
    running: dict[str, int] = {}  # what the instances that would take it run now: "v3" -> instances
    refusal_counts: dict[str, int] = {}
    for pk in instances.order_by("name").values_list("pk", flat=True):
        standing = standings.get(pk)
        if standing is None:
            continue
        if standing.standing == "offline":
            groups["offline"].append(pk)
        elif standing.standing in ("pinned", "frozen"):
            groups["refusers"].append(pk)
            why = standing.pinned_to if standing.standing == "pinned" else "FROZEN"
            refusal_counts[why] = refusal_counts.get(why, 0) + 1
        else:
            groups["takers"].append(pk)
            mix = standing.mix(slug)
            running[mix.text if mix else "none"] = running.get(mix.text if mix else "none", 0) + 1
    # A sample of each group (the first by name), read in full; the whole list is the instances page, filtered.
    sampled = {pk for pks in groups.values() for pk in pks[:PUBLISH_SAMPLE]}
    states = {
        state.instance.pk: state
        for state in instance_states(
            instances_for(actor=request.user, project=place.project, environment=target).filter(pk__in=sampled)
        )
    }
    takers, offline = (
        [states[pk] for pk in groups[name][:PUBLISH_SAMPLE] if pk in states] for name in ("takers", "offline")
    )
    refusers = [
        (states[pk], standings[pk].pinned_to if standings[pk].standing == "pinned" else "FROZEN")
        for pk in groups["refusers"][:PUBLISH_SAMPLE]
        if pk in states
    ]
    return render(
        request,
        "web/publish.html",
        {
            **place.context(),
            "version": version,
            "environment": target,
            "current": current,
            "diff": snapshot_diff(current.version.snapshot if current else None, version.snapshot),
            # Counts, and a sample of each group: the whole list is the instances page, filtered.
            "taker_count": len(groups["takers"]),
            "takers": takers,
            "taker_versions": sorted(running.items(), key=lambda item: -item[1]),
            "refuser_count": len(groups["refusers"]),
            "refusers": refusers,
            "refusal_counts": sorted(refusal_counts.items()),
            "offline_count": len(groups["offline"]),
            "offline": offline,
            "sample": PUBLISH_SAMPLE,
            "warnings": publish_warnings(version=version, environment=target),
            "error": error,
        },
        status=status,
    )


def _release(request: HttpRequest, place: Place, release_id: int) -> Release:
    release = (
        Release.objects.filter(pk=release_id, prompt_set=place.prompt_set)
        .select_related("version", "environment", "published_by")
        .first()
    )
    if release is None:
        raise NotFound("No such release.")
    return release


def _ack_context(request: HttpRequest, place: Place, release: Release) -> dict:
    """Counts per state (applied, waiting, refusing, offline), then one page of the instances in the chosen state
    (``?state=``, all by default) whose name, host or id contains ``?q=``."""
    slug = place.prompt_set.slug
    number = release.version.number
    acks = acknowledgement_ids(release=release)
    instances = counted(instances_for(actor=request.user, project=place.project, environment=release.environment))
    standings = set_standings(instances, slug=slug, numbers={release.environment_id: number}, now=timezone.now())
    groups: dict[str, list[dict]] = {state: [] for state in RELEASE_STATES}
    for pk, instance_id, name, host in instances.order_by("name").values_list("pk", "instance_id", "name", "host"):
        if pk not in standings:
            continue  # it does not follow the set
        standing = standings[pk].standing
        row = {"pk": pk, "name": name, "host": host, "id": instance_id}
        acked = acks.pop(instance_id, None)
        if acked is not None:
            groups["applied"].append({**row, "ack": acked})
        elif standing == "running":
            groups["applied"].append(row)
        elif standing == "offline":
            groups["offline"].append(row)
        elif standing in ("pinned", "frozen"):
            groups["refusing"].append(row)
        else:
            groups["waiting"].append(row)
    # Acknowledged by an instance no longer listed: still applied. Their names and hosts are read for a search,
    # otherwise for the rows shown only (with the acknowledgements' details below): a release may have thousands.
    query = request.GET.get("q", "").strip()
    if query:
        unlisted = acknowledgement_details(release=release, ids=list(acks.values()))
        groups["applied"] += [{**unlisted[pk], "ack": pk} for pk in acks.values() if pk in unlisted]
    else:
        groups["applied"] += [{"ack": pk, "unlisted": True} for pk in acks.values()]
    counts = {state: len(rows) for state, rows in groups.items()}
    chosen = request.GET.get("state", "")
    chosen = chosen if chosen in groups else ""
    rows = [
        {**row, "state": state} for state in RELEASE_STATES if not chosen or state == chosen for row in groups[state]
    ]
    if query:
        needle = query.lower()
        rows = [
            row for row in rows if needle in row["name"].lower() or needle in row["host"].lower() or needle in row["id"]
        ]
    page = Paginator(rows, ACK_PAGE_SIZE).get_page(request.GET.get("page"))
    # The details of the rows shown only: what their processes run, why they refuse, when they were last seen.
    shown = {row["pk"]: row for row in page.object_list if row.get("pk")}
    for state in instance_states(instances_for(actor=request.user, project=place.project).filter(pk__in=list(shown))):
        row = shown[state.instance.pk]
        row["runs"] = state.versions_of(slug)
        row["last_seen_at"] = state.last_seen_at
        row["why"] = "FROZEN" if state.standing(slug, number) == "frozen" else state.pinned_to(slug)
    acked_rows = [row for row in page.object_list if row.get("ack")]
    details = acknowledgement_details(release=release, ids=[row["ack"] for row in acked_rows]) if acked_rows else {}
    for row in acked_rows:
        detail = details.get(row["ack"])
        if detail is None:
            continue
        if row.pop("unlisted", False):  # its name and host were left for now (see above)
            row.update(id=detail["id"], name=detail["name"], host=detail["host"])
        row.update(version=detail["version"], at=detail["at"])
    return {
        **place.context(),
        "release": release,
        "counts": counts,
        "ack_count": counts["applied"],
        "state": chosen,
        "q": query,
        "page": page,
        "matched": len(rows),
        "follows": sum(counts.values()),
        "show_find": sum(counts.values()) > 10,
        "state_labels": [
            (state, f"{STATE_WORDS[state]} ({counts[state]})") for state in RELEASE_STATES if counts[state]
        ],
    }


@login_required
def release_detail(request: HttpRequest, org: str, project: str, prompt_set: str, release_id: int) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    release = _release(request, place, release_id)
    context = _ack_context(request, place, release)
    if "publish" in place.caps:
        # Offered from the newest release only: the version live here before it (when it is a target).
        targets = rollback_targets(prompt_set=place.prompt_set, environment=release.environment, limit=1)
        current = selectors.current_release(environment=release.environment, prompt_set=place.prompt_set)
        if current is not None and current.pk == release.pk and targets:
            context["rollback_offer"] = targets[0]
    return render(request, "web/release.html", context)


@login_required
def release_acks(request: HttpRequest, org: str, project: str, prompt_set: str, release_id: int) -> HttpResponse:
    """htmx (refetched on page events): the counts per state and the page of instances being looked at."""
    place = place_get(request, org, project, prompt_set)
    release = _release(request, place, release_id)
    return render(request, "web/partials/acks.html", _ack_context(request, place, release))


def _number(value: str | None, *, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default

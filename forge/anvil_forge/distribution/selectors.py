"""Reads of the distribution app.

Selectors named ``*_for(*, actor, ...)`` are for people (the web UI) and only return what the actor's
organisations hold. The token-scoped reads (``current_releases``, ``release_for_set``...) serve the LIVE
API, whose caller is already bound to one project and environment by its token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connections
from django.db.models import Case, Max, OuterRef, Prefetch, Q, QuerySet, Subquery, TextField, Value, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils import timezone

from anvil_forge.accounts.models import Membership, Organisation
from anvil_forge.accounts.permissions import Capability, SystemActor, require
from anvil_forge.audit.models import AuditEvent
from anvil_forge.distribution.models import AccessToken, InstanceMode, LiveInstance, LiveProcess, Release
from anvil_forge.prompts.models import Environment, Project, PromptSet, PromptSetVersion

# The check-in interval the FORGE asks of clients (in its check-in answer). How long a process stays live is
# each process's own: see CheckIn.gone_after_seconds.
CHECKIN_INTERVAL_SECONDS = 60


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


def acknowledgement_ids(*, release: Release) -> dict[str, int]:
    """Instance id -> the id of its newest acknowledgement of ``release`` (one narrow read: a release may have
    thousands). :func:`acknowledgement_details` reads the few shown."""
    rows = (
        acknowledgements_for(release=release)
        .annotate(_instance=KeyTextTransform("instance_id", "data"))
        .values_list("_instance", "pk")
    )
    acks: dict[str, int] = {}
    for instance_id, pk in rows:  # newest first: keep each instance's newest
        acks.setdefault(instance_id or "", pk)
    return acks


def acknowledgement_details(*, release: Release, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Acknowledgement (audit event) id -> ``{"id", "name", "host", "version", "at"}`` for ``ids`` of
    :func:`acknowledgement_ids`."""
    rows = (
        acknowledgements_for(release=release)
        .filter(pk__in=ids)
        .annotate(
            _instance=KeyTextTransform("instance_id", "data"),
            _name=KeyTextTransform("instance", "data"),
            _host=KeyTextTransform("host", "data"),
            _version=KeyTextTransform("version", "data"),
        )
        .values_list("pk", "_instance", "_name", "_host", "_version", "created_at")
    )
    return {
        pk: {"id": instance_id or "", "name": name or "", "host": host or "", "version": _number(version), "at": at}
        for pk, instance_id, name, host, version, at in rows
    }


def _organisation_ids(actor: Any) -> Any:
    if isinstance(actor, SystemActor):
        return Organisation.objects.values("id")
    if actor is None or not getattr(actor, "is_authenticated", False) or getattr(actor, "pk", None) is None:
        return Organisation.objects.none().values("id")
    return Membership.objects.filter(user=actor).values("organisation_id")


def instances_for(
    *,
    actor: Any,
    organisation: Organisation | None = None,
    project: Project | None = None,
    environment: Environment | None = None,
    now: datetime | None = None,
) -> QuerySet[LiveInstance]:
    """The LIVE instances the actor may see (their organisations), optionally of one organisation, project or
    environment, with their processes. Instances offline for longer than ``OFFLINE_RETENTION`` are left out.
    Turn them into :class:`InstanceState` with :func:`instance_states`."""
    now = now or timezone.now()
    instances = (
        LiveInstance.objects.filter(project__organisation_id__in=_organisation_ids(actor))
        .retained(now=now)
        .select_related("project__organisation", "environment", "token")
        .prefetch_related(Prefetch("processes", queryset=LiveProcess.objects.order_by("process_id")))
    )
    if organisation is not None:
        instances = instances.filter(project__organisation=organisation)
    if project is not None:
        instances = instances.filter(project=project)
    if environment is not None:
        instances = instances.filter(environment=environment)
    return instances.order_by("project__organisation__slug", "project__slug", "environment__slug", "name")


@dataclass
class InstanceRow:
    """The columns of a LIVE instance the summaries need (see :func:`instance_summaries`): no model, no token."""

    pk: int
    instance_id: str
    name: str
    host: str
    project_id: int
    environment_id: int
    last_seen_at: datetime


@dataclass
class ProcessRow:
    """The columns of a LIVE process the standings need (``usage`` is never read for them)."""

    instance_id: int
    process_id: int
    client_version: str
    mode: str
    pins: dict[str, int]
    versions: dict[str, int]
    last_seen_at: datetime
    expires_at: datetime


def instance_summaries(
    *,
    actor: Any,
    organisation: Organisation | None = None,
    project: Project | None = None,
    environment: Environment | None = None,
    now: datetime | None = None,
) -> list[InstanceState]:
    """Like ``instance_states(instances_for(...))`` but in two narrow queries of plain rows, for counting and
    choosing at thousands of instances: each state's ``instance`` is an :class:`InstanceRow` and its processes
    :class:`ProcessRow` s. Load the full rows of the few shown with :func:`instances_for` (``pk__in``)."""
    now = now or timezone.now()
    instances = instances_for(
        actor=actor, organisation=organisation, project=project, environment=environment, now=now
    ).prefetch_related(None)
    rows = {
        values["pk"]: InstanceRow(**values)
        for values in instances.values(
            "pk", "instance_id", "name", "host", "project_id", "environment_id", "last_seen_at"
        )
    }
    processes: dict[int, list[ProcessRow]] = {}
    fields = [f for f in ProcessRow.__dataclass_fields__ if f != "instance_id"]
    for values in (
        LiveProcess.objects.filter(instance__in=instances.values("pk"))
        .order_by("instance_id", "process_id")
        .values("instance_id", *fields)
    ):
        processes.setdefault(values["instance_id"], []).append(ProcessRow(**values))
    states = []
    for pk, row in rows.items():
        every = processes.get(pk, [])
        live = [process for process in every if process.expires_at > now]
        seen = [row.last_seen_at, *(process.last_seen_at for process in every)]
        states.append(InstanceState(instance=row, processes=live, known=live or every, last_seen_at=max(seen)))  # type: ignore[arg-type]
    return states


STANDINGS = ("running", "behind", "frozen", "pinned", "offline")


@dataclass
class Standing:
    """Where one instance stands on one set (see :func:`set_standings`), and the little the pages show of it.

    Instances whose processes report the same are given the same object: read it, never change it."""

    environment_id: int
    standing: str  # one of STANDINGS
    following: int = 0  # its live processes that follow the set
    numbers: dict[int, int] = field(default_factory=dict)  # version -> its live processes running it
    pins: set[int] = field(default_factory=set)  # the versions its live processes are pinned to

    def mix(self, slug: str) -> SetMix | None:
        """What it runs, as :meth:`InstanceState.versions_of` says it."""
        if not self.numbers:
            return None
        ordered = sorted(self.numbers.items(), key=lambda item: (-item[1], -item[0]))
        return SetMix(slug=slug, numbers=ordered, processes=self.following)

    @property
    def pinned_to(self) -> str:
        """As :meth:`InstanceState.pinned_to` says it."""
        return "pinned to " + " and ".join(f"v{number}" for number in sorted(self.pins))


def set_standings(
    instances: QuerySet[LiveInstance], *, slug: str, numbers: dict[int, int | None], now: datetime
) -> dict[int, Standing]:
    """Instance pk -> :class:`Standing` on ``slug`` for the ``instances`` that follow the set: the same answer
    as :meth:`InstanceState.standing` against the version live in each instance's environment (``numbers``:
    environment id -> version number or ``None``; one left out counts as ``None``). See :func:`sets_standings`."""
    return sets_standings(instances, numbers={slug: numbers}, now=now)[slug]


def sets_standings(
    instances: QuerySet[LiveInstance], *, numbers: dict[str, dict[int, int | None]], now: datetime
) -> dict[str, dict[int, Standing]]:
    """:func:`set_standings` of several sets at once (``numbers``: set slug -> environment id -> version number).

    One query of small values per process, read from a plain cursor; each distinct :data:`Profile` (what an
    instance's processes report) is judged once, and the instances that share one share its :class:`Standing`
    (read them, never change them), so a page can count thousands of instances (:func:`instance_summaries` and
    :func:`instances_for` are for the few it shows)."""
    profiles = _process_profiles(instances, now=now)
    decode = _decoder()
    result: dict[str, dict[int, Standing]] = {}
    for slug, by_environment in numbers.items():
        judged: dict[Profile, Standing | None] = {}
        standings: dict[int, Standing] = {}
        for pk, profile in profiles.items():
            if profile in judged:
                standing = judged[profile]
            else:
                standing = judged[profile] = _profile_standing(profile, slug, by_environment, decode)
            if standing is not None:
                standings[pk] = standing
        result[slug] = standings
    return result


# What an instance's processes report, as far as the pages judge it: one ``(environment id, mode, live (1 or 0),
# versions, pins)`` per process, the JSON columns as the database's text. Instances of a fleet share a few.
Profile = tuple[tuple[int, str, int, Any, Any], ...]


def _process_profiles(instances: QuerySet[LiveInstance], *, now: datetime) -> dict[int, Profile]:
    """Instance pk -> its :data:`Profile`, for every instance of ``instances`` with a process.

    One query from a plain cursor, the JSON columns read as text: the pages judge each distinct profile once
    (:func:`sets_standings`, :func:`instance_marks`) instead of each of thousands of processes, and decode each
    distinct text once (the database's JSON functions, per row and per key, cost more than that on SQLite)."""
    # From the instances, joined to their processes (not the processes of ``pk IN (the instances)``: on SQLite
    # that costs a list of every instance's pk, and 18 ms instead of 29 for 12,000 processes).
    query = (
        instances.annotate(
            _live=Case(When(processes__expires_at__gt=now, then=Value(1)), default=Value(0)),
            _versions=Cast("processes__versions", TextField()),
            _pins=Cast("processes__pins", TextField()),
        )
        .order_by()
        .values_list("pk", "environment_id", "processes__mode", "_live", "_versions", "_pins")
    )
    sql, params = query.query.sql_with_params()
    with connections[query.db].cursor() as cursor:
        cursor.execute(sql, params)
        fetched = cursor.fetchall()
    profiles: dict[int, Profile] = {}
    for row in fetched:
        if row[2] is None:
            continue  # an instance without a process (the outer join's row)
        pk = row[0]
        prior = profiles.get(pk)
        profiles[pk] = (row[1:],) if prior is None else (*prior, row[1:])
    return profiles


def _decoder() -> Any:
    """A function from a JSON object column's value (see :func:`_json`) to its dictionary, decoding each distinct
    text once. The dictionaries are shared: read them, never change them."""
    decoded: dict[Any, dict[str, Any]] = {}

    def decode(text: Any) -> dict[str, Any]:
        if isinstance(text, dict):
            return text
        value = decoded.get(text)
        if value is None:
            value = decoded[text] = _json(text)
        return value

    return decode


def _profile_standing(profile: Profile, slug: str, numbers: dict[int, int | None], decode: Any) -> Standing | None:
    """The :class:`Standing` on ``slug`` of an instance with ``profile`` (``None`` when it does not follow the set),
    as :meth:`InstanceState.standing` judges it against ``numbers`` (environment id -> the live version)."""
    environment_id = profile[0][0]
    live = [process for process in profile if process[2]]
    if not live:
        follows = any(slug in decode(versions) or slug in decode(pins) for *_, versions, pins in profile)
        return Standing(environment_id, "offline") if follows else None
    standing = Standing(environment_id, "")
    lowest: int | None = None
    for _environment, mode, _live, versions_text, pins_text in live:
        versions, pins = decode(versions_text), decode(pins_text)
        runs, pinned = slug in versions, slug in pins
        if not (runs or pinned):
            continue
        standing.following += 1
        if pinned:
            standing.pins.add(_number(pins[slug]) or 0)
        if mode == InstanceMode.FROZEN:
            standing.standing = "frozen"
        number = _number(versions[slug]) if runs else None
        lowest = (number or 0) if lowest is None else min(lowest, number or 0)
        if number is not None:
            standing.numbers[number] = standing.numbers.get(number, 0) + 1
    if not standing.following:
        return None
    current = numbers.get(environment_id)
    if standing.pins:
        standing.standing = "pinned"
    elif standing.standing == "frozen":
        pass
    elif current is None or (lowest or 0) < current:
        standing.standing = "behind"
    else:
        standing.standing = "running"
    return standing


def _number(value: Any) -> int | None:
    """A version number as the database gave it from a JSON document (a number, or its text on PostgreSQL)."""
    if value is None or isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass
class InstanceMark:
    """What the instances page filters and counts by, for one instance (see :func:`instance_marks`)."""

    pk: int
    environment_id: int
    name: str
    host: str
    offline: bool
    frozen: bool  # a process it is known by is FROZEN
    pinned: bool  # a process it is known by is pinned
    versions: dict[str, set[int]]  # set slug -> the versions the processes it is known by run


def instance_marks(instances: QuerySet[LiveInstance], *, now: datetime) -> list[InstanceMark]:
    """:class:`InstanceMark` s of ``instances`` (from :func:`instances_for`, in its order), judged as
    :class:`InstanceState` judges them (by the live processes, or every process when none is live).

    Two narrow queries: no model, no date, and each distinct :data:`Profile` judged once (the marks of instances
    that share one share its ``versions``: read it, never change it), so the instances page filters and counts
    thousands of instances (it loads the page's few whole)."""
    profiles = _process_profiles(counted(instances), now=now)
    decode = _decoder()
    judged: dict[Profile, tuple[bool, bool, bool, dict[str, set[int]]]] = {}
    marks = []
    for pk, environment_id, name, host in instances.values_list("pk", "environment_id", "name", "host"):
        profile = profiles.get(pk, ())
        if profile not in judged:
            judged[profile] = _profile_mark(profile, decode)
        offline, frozen, pinned, versions = judged[profile]
        marks.append(
            InstanceMark(
                pk=pk,
                environment_id=environment_id,
                name=name,
                host=host,
                offline=offline,
                frozen=frozen,
                pinned=pinned,
                versions=versions,
            )
        )
    return marks


def _profile_mark(profile: Profile, decode: Any) -> tuple[bool, bool, bool, dict[str, set[int]]]:
    """``(offline, frozen, pinned, versions)`` of an instance with ``profile``, as :class:`InstanceMark` has them."""
    live = [process for process in profile if process[2]]
    known = live or profile
    versions: dict[str, set[int]] = {}
    for *_, running, _pins in known:
        for slug, number in decode(running).items():
            versions.setdefault(slug, set()).add(number)
    frozen = any(process[1] == InstanceMode.FROZEN for process in known)
    pinned = any(decode(process[4]) for process in known)
    return not live, frozen, pinned, versions


def _json(value: Any) -> dict[str, Any]:
    """A JSON object column as a plain cursor gives it (text, or already decoded)."""
    if isinstance(value, str):
        return {} if value == "{}" else json.loads(value)
    return value or {}


@dataclass(frozen=True)
class SetMix:
    """What the live processes of one instance run (or are pinned to) of one set."""

    slug: str
    numbers: list[tuple[int, int]]  # (version number, processes), most processes first
    processes: int  # the instance's live processes that follow the set

    @property
    def mixed(self) -> bool:
        return len(self.numbers) != 1 or self.numbers[0][1] != self.processes

    @property
    def text(self) -> str:
        """``v3``, or ``v3 on 3 of 4 processes, v2 on 1`` when the processes differ."""
        if not self.numbers:
            return "none"
        if not self.mixed:
            return f"v{self.numbers[0][0]}"
        parts = [f"v{number} on {count}" for number, count in self.numbers]
        parts[0] += f" of {self.processes} process{'es' if self.processes != 1 else ''}"
        return ", ".join(parts)


@dataclass
class InstanceState:
    """One instance as the FORGE shows it: derived from its live processes, or "offline" when it has none.

    ``processes`` are the live ones. An offline instance keeps what its processes last reported
    (``known``), so the pages can say which sets it followed; it counts nowhere as running or behind.
    """

    instance: LiveInstance
    processes: list[LiveProcess]
    known: list[LiveProcess]  # the live processes, or every row when there is none
    last_seen_at: datetime

    @property
    def offline(self) -> bool:
        return not self.processes

    @property
    def modes(self) -> list[str]:
        return sorted({process.mode for process in self.known})

    @property
    def client_versions(self) -> list[str]:
        return sorted({process.client_version for process in self.known if process.client_version})

    @property
    def versions(self) -> list[SetMix]:
        return _mixes(self.known, "versions")

    @property
    def pins(self) -> list[SetMix]:
        return _mixes(self.known, "pins")

    @property
    def shows_processes(self) -> bool:
        """Whether to list the processes: clients that send no process id report one process, id 0."""
        return any(process.process_id for process in self.processes)

    def following(self, slug: str) -> list[LiveProcess]:
        return [process for process in self.known if slug in process.versions or slug in process.pins]

    def versions_of(self, slug: str) -> SetMix | None:
        return next((mix for mix in self.versions if mix.slug == slug), None)

    def pinned_to(self, slug: str) -> str:
        numbers = sorted({process.pins[slug] for process in self.known if slug in process.pins})
        return "pinned to " + " and ".join(f"v{number}" for number in numbers)

    def standing(self, slug: str, version: int | None) -> str | None:
        """Where the instance stands on ``slug`` against ``version`` (the live version, or ``None`` for none).

        ``None`` when it does not follow the set; ``"offline"`` without live processes; otherwise by its
        processes that follow the set: ``"pinned"`` if one is pinned, else ``"frozen"`` if one is FROZEN, else
        ``"behind"`` if one runs an older version (or none), else ``"running"`` (all run ``version`` or newer).
        """
        following = self.following(slug)
        if not following:
            return None
        if self.offline:
            return "offline"
        kinds = {_process_standing(process, slug, version) for process in following}
        return next((kind for kind in ("pinned", "frozen", "behind") if kind in kinds), "running")


def _process_standing(process: LiveProcess, slug: str, version: int | None) -> str:
    if slug in process.pins:
        return "pinned"
    if process.mode == InstanceMode.FROZEN:
        return "frozen"
    if version is not None and process.versions.get(slug, 0) >= version:
        return "running"
    return "behind"


def _mixes(processes: list[LiveProcess], attribute: str) -> list[SetMix]:
    counts: dict[str, dict[int, int]] = {}
    for process in processes:
        for slug, number in getattr(process, attribute).items():
            per_set = counts.setdefault(slug, {})
            per_set[number] = per_set.get(number, 0) + 1
    mixes = []
    for slug, per_set in sorted(counts.items()):
        following = sum(1 for process in processes if slug in process.versions or slug in process.pins)
        numbers = sorted(per_set.items(), key=lambda item: (-item[1], -item[0]))
        mixes.append(SetMix(slug=slug, numbers=numbers, processes=following))
    return mixes


def instance_state(instance: LiveInstance, *, now: datetime) -> InstanceState:
    """The state of ``instance`` at ``now``; reads its prefetched ``processes`` (see :func:`instances_for`)."""
    rows = list(instance.processes.all())
    live = [process for process in rows if process.expires_at > now]
    seen = [instance.last_seen_at, *(process.last_seen_at for process in rows)]
    return InstanceState(instance=instance, processes=live, known=live or rows, last_seen_at=max(seen))


def instance_states(instances: Any, *, now: datetime | None = None) -> list[InstanceState]:
    now = now or timezone.now()
    return [instance_state(instance, now=now) for instance in instances]


def tokens_for(*, actor: Any, project: Project) -> QuerySet[AccessToken]:
    """The project's ACCESS_TOKENs (active and revoked, newest first). Only for who may manage tokens."""
    require(actor, project.organisation, Capability.MANAGE_TOKENS, what=f"project {project}")
    return AccessToken.objects.filter(project=project).select_related(
        "project", "environment", "created_by", "revoked_by"
    )


@dataclass
class SetDistribution:
    """Where one prompt set stands in one environment, counted in instances (not processes)."""

    prompt_set: PromptSet
    environment: Environment
    release: Release | None
    version: int | None  # the current release's version number
    running: int = 0  # instances whose every live process runs the current version
    behind: int = 0  # accepting, with a live process on an older version (or none)
    frozen: int = 0
    pinned: int = 0
    offline: int = 0  # no live process (they said goodbye or aged out)
    total: int = 0
    versions: dict[int, int] = field(default_factory=dict)  # version number -> instances running it (live)


def distribution_state(
    *, actor: Any, project: Project, prompt_set: PromptSet | None = None, now: datetime | None = None
) -> list[SetDistribution]:
    """Per prompt set and environment of ``project``: the current release and how the instances stand.

    An instance counts in exactly one of ``running``, ``behind``, ``frozen``, ``pinned`` or ``offline`` (see
    :meth:`InstanceState.standing`), and in ``versions`` under each version one of its live processes runs.
    Ordered by set slug, then environment. With ``prompt_set``, that set's rows only.
    """
    require(actor, project.organisation, Capability.VIEW, what=f"project {project}")
    now = now or timezone.now()
    environments = list(Environment.objects.filter(project=project).order_by("id"))
    sets = list(PromptSet.objects.filter(project=project).order_by("slug"))
    if prompt_set is not None:
        sets = [candidate for candidate in sets if candidate.pk == prompt_set.pk]
    # The current release of each set in each environment, in one query, without the versions' snapshots.
    newest = (
        Release.objects.filter(environment__project=project)
        .values("prompt_set_id", "environment_id")
        .annotate(newest=Max("id"))
        .values("newest")
    )
    current = {
        (release.prompt_set_id, release.environment_id): release
        for release in _release_related(Release.objects.filter(id__in=newest)).defer("version__snapshot")
    }
    releases = {
        prompt_set.pk: {environment.pk: current.get((prompt_set.pk, environment.pk)) for environment in environments}
        for prompt_set in sets
    }
    numbers = {
        prompt_set.slug: {pk: release.version.number if release else None for pk, release in by_env.items()}
        for prompt_set in sets
        for by_env in [releases[prompt_set.pk]]
    }
    instances = counted(instances_for(actor=actor, project=project, now=now))
    standings = sets_standings(instances, numbers=numbers, now=now) if sets else {}
    result: list[SetDistribution] = []
    for prompt_set in sets:
        counts: dict[tuple[int, str], int] = {}
        versions: dict[int, dict[int, int]] = {}
        # Instances with the same profile share their Standing: count each distinct one once, times its instances.
        shared: dict[int, list[Any]] = {}
        for standing in standings[prompt_set.slug].values():
            entry = shared.get(id(standing))
            if entry is None:
                shared[id(standing)] = [standing, 1]
            else:
                entry[1] += 1
        for standing, times in shared.values():
            key = (standing.environment_id, standing.standing)
            counts[key] = counts.get(key, 0) + times
            per_version = versions.setdefault(standing.environment_id, {})
            for number in standing.numbers:
                per_version[number] = per_version.get(number, 0) + times
        for environment in environments:
            row = SetDistribution(
                prompt_set=prompt_set,
                environment=environment,
                release=releases[prompt_set.pk][environment.pk],
                version=numbers[prompt_set.slug][environment.pk],
                versions=versions.get(environment.pk, {}),
            )
            for standing in STANDINGS:
                setattr(row, standing, counts.get((environment.pk, standing), 0))
            row.total = sum(counts.get((environment.pk, standing), 0) for standing in STANDINGS)
            result.append(row)
    return result


def counted(instances: QuerySet[LiveInstance]) -> QuerySet[LiveInstance]:
    """``instances`` (from :func:`instances_for`) without its joins, prefetches and order: for counting (see
    :func:`set_standings`)."""
    return instances.select_related(None).prefetch_related(None).order_by()


def publish_warnings(*, version: PromptSetVersion, environment: Environment, now: datetime | None = None) -> list[str]:
    """Warnings to show before publishing ``version`` to ``environment`` (empty when there is nothing to say).

    Live processes that follow the set report the prompt ids and variable names their application used.
    Warned about, naming the instances: an id they used that the version lacks (and that no other set live in
    the environment provides), and a required parameter without a default that they never pass.
    """
    now = now or timezone.now()
    set_slug = version.prompt_set.slug
    prompts = {p["id"]: p for p in version.snapshot.get("prompts", [])}
    # Only what is read (the instance's name and the usage), of the processes that reported some usage.
    processes = (
        LiveProcess.objects.live(now=now)
        .filter(instance__environment=environment)
        .filter(Q(versions__has_key=set_slug) | Q(pins__has_key=set_slug))
        .exclude(usage={})
        .values_list("instance__name", "usage")
    )
    elsewhere = {
        p["id"]
        for release in current_releases(environment=environment)
        if release.prompt_set_id != version.prompt_set_id
        for p in release.version.snapshot.get("prompts", [])
    }
    missing: dict[str, set[str]] = {}
    unpassed: dict[tuple[str, str], set[str]] = {}
    for name, usage in processes:
        for used_id, variables in (usage or {}).items():
            owner, _, prompt_id = used_id.rpartition(":")
            if owner and owner != set_slug:
                continue
            prompt = prompts.get(prompt_id)
            if prompt is None:
                if owner or prompt_id not in elsewhere:
                    missing.setdefault(prompt_id, set()).add(name)
                continue
            passed = set(variables)
            for parameter in prompt.get("parameters", []):
                if parameter.get("required") and parameter.get("default") is None and parameter["name"] not in passed:
                    unpassed.setdefault((prompt_id, parameter["name"]), set()).add(name)
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

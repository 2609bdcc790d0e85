"""The ``anvil.bundle/1`` bundle of a prompt set version for an environment, built once and cached.

The format itself lives in :mod:`anvil_client.bundle`; this module only gathers the FORGE's data for
:func:`~anvil_client.bundle.build_bundle`. Versions are immutable and releases append-only, so the bytes of
a bundle depend only on (version, its review state, environment, release) and are cached on that key.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings

from anvil_client.bundle import build_bundle, canonical_json
from anvil_forge.distribution.models import Release
from anvil_forge.prompts.models import Environment, PromptSetVersion, VersionState

CACHE_SIZE = 512


@dataclass(frozen=True, slots=True)
class BuiltBundle:
    body: bytes  # canonical JSON, what the API sends
    digest: str  # "sha256:<hex>"
    content_digest: str
    version: int

    @property
    def etag(self) -> str:
        """The strong ETag of the bundle: its digest's hex in quotes."""
        return '"' + self.digest.removeprefix("sha256:") + '"'


class _BundleCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple, BuiltBundle] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> BuiltBundle | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple, item: BuiltBundle) -> None:
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


bundle_cache = _BundleCache(CACHE_SIZE)


def servable(version: PromptSetVersion, environment: Environment) -> bool:
    """Whether ``version`` may be served to ``environment``: approved, or in review where that is allowed."""
    return servable_state(version.state, environment)


def servable_state(state: str, environment: Environment) -> bool:
    """Whether a version in ``state`` may be served to ``environment`` (:func:`servable` without the version)."""
    if state == VersionState.APPROVED:
        return True
    return state == VersionState.IN_REVIEW and environment.accepts_review_versions


def bundle_for(*, version: PromptSetVersion, environment: Environment, release: Release | None) -> BuiltBundle:
    """The bundle of ``version`` as delivered to ``environment`` by ``release`` (``None``: never released there).

    ``version`` should come with ``prompt_set__project__organisation``, ``created_by`` and ``reviewed_by``
    loaded; ``release`` with ``published_by``.
    """
    key = _key(version.pk, version.state, version.reviewed_at, environment.pk, release.pk if release else None)
    prompt_set = version.prompt_set
    project = prompt_set.project
    return _built(
        key,
        organisation=project.organisation.slug,
        project=project.slug,
        environment=environment.slug,
        set_slug=prompt_set.slug,
        number=version.number,
        state=version.state,
        snapshot=version.snapshot,
        created_at=version.created_at,
        created_by=_username(version.created_by),
        reviewed_at=version.reviewed_at,
        reviewed_by=_username(version.reviewed_by),
        published_at=release.published_at if release else None,
        published_by=_username(release.published_by) if release else None,
    )


def _key(
    version_id: int, state: str, reviewed_at: datetime | None, environment_id: int, release_id: int | None
) -> tuple:
    """The cache key of a bundle: everything its bytes depend on besides immutable data."""
    return (version_id, state, reviewed_at, environment_id, release_id, settings.ANVIL_PUBLIC_URL)


def cached_bundle(
    *, version_id: int, state: str, reviewed_at: datetime | None, environment_id: int, release_id: int | None
) -> BuiltBundle | None:
    """The already built bundle for these key columns, or ``None`` (then load the version and use :func:`bundle_for`).

    Lets the API answer a conditional GET from one narrow query, without loading the version's snapshot.
    """
    return bundle_cache.get(_key(version_id, state, reviewed_at, environment_id, release_id))


def _built(
    key: tuple,
    *,
    organisation: str,
    project: str,
    environment: str,
    set_slug: str,
    number: int,
    state: str,
    snapshot: dict,
    created_at: datetime,
    created_by: str | None,
    reviewed_at: datetime | None,
    reviewed_by: str | None,
    published_at: datetime | None,
    published_by: str | None,
) -> BuiltBundle:
    cached = bundle_cache.get(key)
    if cached is not None:
        return cached
    approved = state == VersionState.APPROVED
    bundle = build_bundle(
        forge=settings.ANVIL_PUBLIC_URL,
        organisation=organisation,
        project=project,
        environment=environment,
        set_slug=set_slug,
        version=number,
        approval="approved" if approved else "in_review",
        prompts=list(snapshot.get("prompts", [])),
        created_at=_iso(created_at),
        created_by=created_by,
        approved_at=_iso(reviewed_at) if approved else None,
        approved_by=reviewed_by if approved else None,
        published_at=_iso(published_at),
        published_by=published_by,
    )
    built = BuiltBundle(
        body=canonical_json(bundle),
        digest=bundle["digest"],
        content_digest=bundle["content_digest"],
        version=number,
    )
    bundle_cache.put(key, built)
    return built


def release_frame_data(release_id: int, *, inline_limit: int) -> tuple[int, int, bytes] | None:
    """``(environment id, release id, event data)`` of one release, read with one narrow query.

    The stream's hot path when a publish is announced: the same bytes as :func:`release_event_data`, without
    loading eight related models (compiling that query costs more than the rest of the delivery).
    """
    row = (
        Release.objects.filter(pk=release_id)
        .values(
            "environment_id",
            "published_at",
            "published_by__username",
            "environment__slug",
            "prompt_set__slug",
            "prompt_set__project__slug",
            "prompt_set__project__organisation__slug",
            "version_id",
            "version__number",
            "version__state",
            "version__snapshot",
            "version__created_at",
            "version__created_by__username",
            "version__reviewed_at",
            "version__reviewed_by__username",
        )
        .first()
    )
    if row is None:
        return None
    snapshot = row["version__snapshot"]
    if isinstance(snapshot, str):  # values() leaves JSON as text on some backends
        snapshot = json.loads(snapshot)
    key = _key(row["version_id"], row["version__state"], row["version__reviewed_at"], row["environment_id"], release_id)
    built = _built(
        key,
        organisation=row["prompt_set__project__organisation__slug"],
        project=row["prompt_set__project__slug"],
        environment=row["environment__slug"],
        set_slug=row["prompt_set__slug"],
        number=row["version__number"],
        state=row["version__state"],
        snapshot=snapshot,
        created_at=row["version__created_at"],
        created_by=row["version__created_by__username"],
        reviewed_at=row["version__reviewed_at"],
        reviewed_by=row["version__reviewed_by__username"],
        published_at=row["published_at"],
        published_by=row["published_by__username"],
    )
    set_slug = row["prompt_set__slug"]
    entry = {
        "set": set_slug,
        "version": built.version,
        "release_id": release_id,
        "digest": built.digest,
        "content_digest": built.content_digest,
        "published_at": _iso(row["published_at"]),
        "bundle_url": f"/api/v1/live/bundles/{set_slug}?version={built.version}",
    }
    return row["environment_id"], release_id, _event_data(entry, built, inline_limit)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header value matches ``etag`` (weak comparison, as RFC 9110 asks)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(candidate.strip().removeprefix("W/") == wanted for candidate in if_none_match.split(","))


def _iso(moment: datetime | None) -> str | None:
    """UTC ISO 8601 with a ``Z`` (the FORGE stores aware datetimes; USE_TZ is on)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _username(user: object | None) -> str | None:
    return user.get_username() if user is not None else None  # type: ignore[attr-defined]


def release_entry(release: Release) -> dict:
    """How the API and the stream describe a release (``release`` loaded as ``release_with_related`` does)."""
    built = bundle_for(version=release.version, environment=release.environment, release=release)
    entry = {
        "set": release.prompt_set.slug,
        "version": built.version,
        "release_id": release.pk,
        "digest": built.digest,
        "content_digest": built.content_digest,
        "published_at": _iso(release.published_at),
        "bundle_url": f"/api/v1/live/bundles/{release.prompt_set.slug}?version={built.version}",
    }
    return entry


def release_event_data(release: Release, *, inline_limit: int) -> bytes:
    """The JSON ``data`` of the stream's ``release`` event: the entry, with the bundle when it is small."""
    entry = release_entry(release)
    built = bundle_for(version=release.version, environment=release.environment, release=release)
    return _event_data(entry, built, inline_limit)


def _event_data(entry: dict, built: BuiltBundle, inline_limit: int) -> bytes:
    if len(built.body) > inline_limit:
        return canonical_json(entry)
    # Splice the cached canonical bytes in rather than parsing and serialising the bundle again.
    return canonical_json(entry)[:-1] + b',"bundle":' + built.body + b"}"

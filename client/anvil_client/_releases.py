"""Which version of a set a client serves: its release decisions, apart from how it fetches and swaps bundles.

Pure functions of what the client knows (the release the FORGE announced, the bundle served, the FORGE's word on
the project and environment, the host's pin and mode): no I/O, no lock, no client. :class:`~anvil_client.Client`
holds its lock, asks :func:`decide`, then fetches, checks (:func:`check_bundle`) and swaps as the answer says.

The rules: a pin takes exactly the pinned version; ACCEPTING takes a newer release; FROZEN keeps what it has
unless the sync is asked for by hand; an older version never replaces a newer one unless pinned; a bundle left by
another project or environment is replaced by the FORGE's release whatever its version.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from anvil_client._exceptions import BundleError

logger = logging.getLogger("anvil_client")

Identity = tuple[str, str, str]  # organisation, project, environment


@dataclass(frozen=True, slots=True)
class Decision:
    """``keep``: nothing to do. ``confirm``: the bundle served is the release (from now on it counts as the
    FORGE's). ``take``: fetch ``version`` and serve it."""

    action: str
    version: int | None = None


KEEP = Decision("keep")
CONFIRM = Decision("confirm")


def identity_of(bundle: Any) -> Identity:
    return (bundle.organisation, bundle.project, bundle.environment)


def release_version(release: Mapping[str, Any]) -> int:
    """The version a release announces; :class:`BundleError` when it has none."""
    version = release.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"release for set {release.get('set')!r} has no version number")
    return version


def decide(
    release: Mapping[str, Any],
    current: Any,
    *,
    identity: Identity | None,
    pin: int | None,
    frozen: bool,
    manual: bool = False,
) -> Decision:
    """What to do with ``release`` (of a set the client follows) while ``current`` (a bundle, or ``None``) is
    served. ``identity`` is the FORGE's word on the project and environment, once heard; ``manual`` is a sync
    asked for by hand (it takes a release even when FROZEN)."""
    set_slug = release.get("set")
    wanted = release_version(release)
    if current is not None and identity is not None and identity != identity_of(current):
        current = None  # a cache left by another project or environment: the FORGE's release replaces it
    if pin is not None:
        if current is not None and current.version == pin:
            return KEEP
        return Decision("take", pin)
    if current is not None:
        if current.digest == release.get("digest"):
            return CONFIRM
        if frozen and not manual:
            logger.info("anvil: FROZEN: set %s version %s recorded, not applied", set_slug, wanted)
            return KEEP
        if wanted < current.version:
            logger.warning(
                "anvil: set %s: the FORGE offers version %s, older than version %s running; kept",
                set_slug,
                wanted,
                current.version,
            )
            return KEEP
    return Decision("take", wanted)


def expected_identity(identity: Identity | None, served: Iterable[Any]) -> Identity | None:
    """The project and environment bundles must belong to: the FORGE's word (its releases list) once heard, else
    that of the bundles ``served`` when they agree (a stream may answer before the releases list)."""
    if identity is not None:
        return identity
    identities = {identity_of(bundle) for bundle in served}
    return identities.pop() if len(identities) == 1 else None


def check_bundle(bundle: Any, set_slug: str, version: int, expected: Identity | None) -> None:
    """:class:`BundleError` unless ``bundle`` is the one asked for, of the project and environment expected."""
    if bundle.set != set_slug or bundle.version != version:
        raise BundleError(
            f"asked for set {set_slug!r} version {version}, got set {bundle.set!r} version {bundle.version}"
        )
    if expected is not None and identity_of(bundle) != expected:
        raise BundleError(
            f"bundle is for {bundle.organisation}/{bundle.project} ({bundle.environment}), "
            f"not {expected[0]}/{expected[1]} ({expected[2]})"
        )

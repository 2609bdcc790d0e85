"""The client's release decisions (``anvil_client._releases``), without a client: pins, modes, versions and
the project a bundle belongs to. The same rules run end to end in test_sync.py and test_state.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from anvil_client._exceptions import BundleError
from anvil_client._releases import (
    CONFIRM,
    KEEP,
    Decision,
    check_bundle,
    decide,
    expected_identity,
    release_version,
)

HERE = ("acme", "support-bot", "production")


def bundle(
    version: int, digest: str | None = None, identity: tuple[str, str, str] = HERE, set_slug: str = "core"
) -> Any:
    organisation, project, environment = identity
    return SimpleNamespace(
        set=set_slug, version=version, digest=digest or f"d{version}", organisation=organisation, project=project,
        environment=environment,
    )


def release(version: Any, digest: str | None = None) -> dict[str, Any]:
    return {"set": "core", "version": version, "digest": digest or f"d{version}"}


def test_accepting_takes_a_newer_release_and_confirms_the_one_it_serves() -> None:
    assert decide(release(3), bundle(2), identity=HERE, pin=None, frozen=False) == Decision("take", 3)
    assert decide(release(3), None, identity=None, pin=None, frozen=False) == Decision("take", 3)
    assert decide(release(2), bundle(2), identity=HERE, pin=None, frozen=False) is CONFIRM


def test_an_older_release_never_replaces_a_newer_version_unless_pinned() -> None:
    assert decide(release(1), bundle(2), identity=HERE, pin=None, frozen=False) is KEEP
    assert decide(release(1), bundle(2), identity=HERE, pin=1, frozen=False) == Decision("take", 1)


def test_frozen_keeps_what_it_has_unless_the_sync_is_asked_for_by_hand() -> None:
    assert decide(release(3), bundle(2), identity=HERE, pin=None, frozen=True) is KEEP
    assert decide(release(3), bundle(2), identity=HERE, pin=None, frozen=True, manual=True) == Decision("take", 3)
    assert decide(release(3), None, identity=HERE, pin=None, frozen=True) == Decision("take", 3)  # nothing served


def test_a_pin_takes_exactly_the_pinned_version() -> None:
    assert decide(release(3), bundle(2), identity=HERE, pin=2, frozen=False) is KEEP
    assert decide(release(3), bundle(1), identity=HERE, pin=2, frozen=True) == Decision("take", 2)


def test_a_bundle_of_another_project_is_replaced_whatever_its_version() -> None:
    other = bundle(9, identity=("acme", "other", "production"))
    assert decide(release(3), other, identity=HERE, pin=None, frozen=False) == Decision("take", 3)
    assert decide(release(3), other, identity=None, pin=None, frozen=False) is KEEP  # the FORGE not heard yet


@pytest.mark.parametrize("version", [None, "3", True, 2.0])
def test_a_release_without_a_version_number_is_refused(version: Any) -> None:
    with pytest.raises(BundleError):
        release_version({"set": "core", "version": version})
    with pytest.raises(BundleError):
        decide({"set": "core", "version": version}, None, identity=None, pin=None, frozen=False)


def test_the_identity_expected_is_the_forges_word_else_the_served_bundles_when_they_agree() -> None:
    other = ("acme", "other", "production")
    assert expected_identity(HERE, [bundle(1, identity=other)]) == HERE
    assert expected_identity(None, [bundle(1), bundle(2, set_slug="billing")]) == HERE
    assert expected_identity(None, [bundle(1), bundle(2, identity=other)]) is None
    assert expected_identity(None, []) is None


def test_a_bundle_is_checked_against_what_was_asked_for() -> None:
    check_bundle(bundle(3), "core", 3, HERE)
    check_bundle(bundle(3), "core", 3, None)
    with pytest.raises(BundleError, match="asked for set 'core' version 4"):
        check_bundle(bundle(3), "core", 4, HERE)
    with pytest.raises(BundleError, match="not acme/support-bot"):
        check_bundle(bundle(3, identity=("acme", "other", "production")), "core", 3, HERE)

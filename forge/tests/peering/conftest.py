"""Fixtures for the peering tests: a stub peer FORGE on loopback (allowed here), and fresh per-process state."""

from __future__ import annotations

import pytest

from anvil_forge.distribution.bundles import bundle_cache
from anvil_forge.distribution.tokens import failure_limiter
from anvil_forge.peering import throttle
from forge.tests.peering.stub_peer import stub_peer


@pytest.fixture(autouse=True)
def _peers_on_loopback(settings):
    """The stub peers listen on loopback, which the FORGE refuses by default: these tests allow it."""
    settings.ANVIL_PEER_PRIVATE_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture(autouse=True)
def _fresh_process_state():
    failure_limiter.reset()
    bundle_cache.clear()
    throttle.read_budget.reset()
    throttle.answers.reset()
    yield
    failure_limiter.reset()
    throttle.read_budget.reset()
    throttle.answers.reset()


@pytest.fixture
def peer_server():
    with stub_peer() as server:
        yield server

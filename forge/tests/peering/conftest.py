"""Fixtures for the peering tests: a stub peer FORGE on loopback, and fresh per-process state."""

from __future__ import annotations

import pytest

from anvil_forge.distribution.bundles import bundle_cache
from anvil_forge.distribution.tokens import failure_limiter
from forge.tests.peering.stub_peer import stub_peer


@pytest.fixture(autouse=True)
def _fresh_process_state():
    failure_limiter.reset()
    bundle_cache.clear()
    yield
    failure_limiter.reset()


@pytest.fixture
def peer_server():
    with stub_peer() as server:
        yield server

"""Fixtures of the security suite."""

from __future__ import annotations

import pytest

from forge.tests.security.world import World, build_world


@pytest.fixture
def world(db) -> World:
    """See :func:`forge.tests.security.world.build_world`."""
    return build_world()

"""How a committed release reaches the LIVE streams (in this process and, on PostgreSQL, in every other).

Filled in by the distribution work: the publish service calls :func:`release_published` inside its
transaction; delivery happens only after commit.
"""

from __future__ import annotations

from anvil_forge.distribution.models import Release


def release_published(release: Release) -> None:
    """Announce ``release`` to every stream once the surrounding transaction commits."""

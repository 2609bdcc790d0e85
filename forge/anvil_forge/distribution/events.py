"""How a committed release (or a revoked token) reaches the LIVE streams, in this process and in every other.

The publish service calls :func:`release_published` inside its transaction, and ``token_revoke`` calls
:func:`token_revoked` inside its own. Two paths carry the news, and neither leaves before the commit:

* in this process: ``transaction.on_commit`` hands the id to the stream broadcaster's event loop;
* on PostgreSQL, to every FORGE process: ``pg_notify`` in the same transaction, which PostgreSQL delivers
  to the listeners only when (and if) the transaction commits.

A process that misses both (a SQLite FORGE when the ``anvil-forge`` command publishes, a listener that
was reconnecting) catches up through the broadcaster's periodic check of the newest releases.
"""

from __future__ import annotations

from django.db import transaction

from anvil_forge.distribution.models import AccessToken, Release

CHANNEL = "anvil_distribution"
RELEASE = "release"
REVOKE = "revoke"


def release_published(release: Release) -> None:
    """Announce ``release`` to every stream once the surrounding transaction commits."""
    _announce(RELEASE, release.pk)


def token_revoked(token: AccessToken) -> None:
    """Close the open streams of ``token`` once the surrounding transaction commits."""
    _announce(REVOKE, token.pk)


def _announce(kind: str, ident: int) -> None:
    from anvil_forge.distribution.broadcast import broadcaster

    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, f"{kind}:{ident}"])
    transaction.on_commit(lambda: broadcaster.announce_threadsafe(kind, ident))

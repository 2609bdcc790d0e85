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

import logging

from django.conf import settings
from django.db import transaction

from anvil_forge.distribution.bundles import release_frame_data
from anvil_forge.distribution.models import AccessToken, Release

logger = logging.getLogger(__name__)

CHANNEL = "anvil_distribution"
RELEASE = "release"
REVOKE = "revoke"
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; bigger events travel as a release id only.
MAX_NOTIFY_PAYLOAD = 7900


def release_published(release: Release) -> None:
    """Announce ``release`` to every stream once the surrounding transaction commits.

    The stream event is built here, inside the transaction, and travels with the announcement (in the
    NOTIFY payload when it fits), so the processes that deliver it need no database round trip; if
    building fails, the announcement carries the id only and each process builds the event itself.
    """
    prebuilt: tuple[int, bytes] | None = None
    try:
        loaded = release_frame_data(release.pk, inline_limit=settings.ANVIL_STREAM_INLINE_BUNDLE_BYTES)
        if loaded is not None:
            prebuilt = (loaded[0], loaded[2])
    except Exception:  # never let the announcement break a publish
        logger.exception("could not build the stream event of release %s; streams will load it", release.pk)
    _announce(RELEASE, release.pk, prebuilt)


def token_revoked(token: AccessToken) -> None:
    """Close the open streams of ``token`` once the surrounding transaction commits."""
    _announce(REVOKE, token.pk, None)


def notify_payload(kind: str, ident: int, prebuilt: tuple[int, bytes] | None) -> str:
    """``kind:id``, or ``release:id:environment id:event data`` when the event fits in a NOTIFY."""
    if prebuilt is not None:
        payload = f"{kind}:{ident}:{prebuilt[0]}:{prebuilt[1].decode('utf-8')}"
        if len(payload.encode("utf-8")) <= MAX_NOTIFY_PAYLOAD:
            return payload
    return f"{kind}:{ident}"


def parse_notify_payload(payload: str) -> tuple[str, int, tuple[int, bytes] | None] | None:
    """The inverse of :func:`notify_payload`; ``None`` for anything else on the channel."""
    kind, _, rest = payload.partition(":")
    ident, _, rest = rest.partition(":")
    if not ident.isdigit():
        return None
    if not rest:
        return kind, int(ident), None
    environment_id, _, data = rest.partition(":")
    if not environment_id.isdigit() or not data:
        return kind, int(ident), None
    return kind, int(ident), (int(environment_id), data.encode("utf-8"))


def _announce(kind: str, ident: int, prebuilt: tuple[int, bytes] | None) -> None:
    from anvil_forge.distribution.broadcast import broadcaster

    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, notify_payload(kind, ident, prebuilt)])
    transaction.on_commit(lambda: broadcaster.announce_threadsafe(kind, ident, prebuilt))

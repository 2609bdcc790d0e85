"""Two FORGE processes on one PostgreSQL database: a publish reaches streams on both through LISTEN/NOTIFY.

The periodic safety-net check is set to a minute here, so only NOTIFY can deliver within the deadline.
"""

from __future__ import annotations

import time

import pytest

from anvil_client.bundle import load_bundle
from tests.forge_process import postgres_url
from tests.integration.test_distribution_stream import SSEStream, make_token, publish

pytestmark = [
    pytest.mark.integration,
    pytest.mark.postgres,
    pytest.mark.skipif(
        postgres_url() is None, reason="needs PostgreSQL: set DATABASE_URL=postgresql://... to run LISTEN/NOTIFY tests"
    ),
]

NOTIFY_ONLY = {"ANVIL_RELEASE_POLL_SECONDS": "60", "ANVIL_STREAM_HEARTBEAT_SECONDS": "1"}


def test_publish_reaches_streams_on_two_forge_processes_sharing_one_database(make_forge):
    first = make_forge(env=NOTIFY_ONLY)
    second = make_forge(env=NOTIFY_ONLY, database_url=first.database_url)
    token = make_token(first)
    on_first = SSEStream(first.url, token).open()
    on_second = SSEStream(second.url, token).open()
    try:
        assert on_first.next(kind="release").json()["version"] == 1
        assert on_second.next(kind="release").json()["version"] == 1

        published = publish(first, 2)

        for stream in (on_first, on_second):
            event = stream.next(timeout=3, kind="release")
            assert load_bundle(event.json()["bundle"]).version == 2
            assert event.at - published < 1.0, "delivered by NOTIFY, not by the minute-long periodic check"
    finally:
        on_first.close()
        on_second.close()


def test_revocation_on_postgres_closes_streams_on_every_process(make_forge):
    first = make_forge(env=NOTIFY_ONLY)
    second = make_forge(env=NOTIFY_ONLY, database_url=first.database_url)
    token = make_token(first)
    streams = [SSEStream(forge.url, token).open() for forge in (first, second)]
    for stream in streams:
        stream.next(kind="release")

    first.cli("token", "revoke", token[: len("anvil_live_") + 6])
    revoked = time.monotonic()

    for stream in streams:
        assert stream.wait_closed(timeout=3) - revoked < 1.0

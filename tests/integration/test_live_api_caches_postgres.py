"""Two FORGE processes on one PostgreSQL database: each one's LIVE API caches follow publishes and revocations.

The periodic safety-net check is set to a minute, so what arrives within the deadline came through NOTIFY.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.forge_process import postgres_url
from tests.integration.test_distribution_stream import get, make_token, publish

pytestmark = [
    pytest.mark.integration,
    pytest.mark.postgres,
    pytest.mark.skipif(postgres_url() is None, reason="needs PostgreSQL: set DATABASE_URL=postgresql://..."),
]

NOTIFY_ONLY = {"ANVIL_RELEASE_POLL_SECONDS": "60", "ANVIL_LIVE_CACHE_SECONDS": "60"}


def _current_version(forge, token: str) -> int:
    status, _, body = get(forge, "/api/v1/live/releases", token)
    assert status == 200
    return json.loads(body)["releases"][0]["version"]


def test_a_publish_reaches_the_cached_api_answers_of_both_processes_within_a_second(make_forge):
    first = make_forge(env=NOTIFY_ONLY)
    second = make_forge(env=NOTIFY_ONLY, database_url=first.database_url)
    token = make_token(first)
    for forge in (first, second):
        assert _current_version(forge, token) == 1
        assert get(forge, "/api/v1/live/bundles/core", token)[0] == 200

    published = publish(first, 2)

    for forge in (first, second):
        while _current_version(forge, token) != 2:
            assert time.monotonic() - published < 1.0, f"{forge.url} still answers version 1"
            time.sleep(0.02)
        status, _, body = get(forge, "/api/v1/live/bundles/core", token)
        assert status == 200 and json.loads(body)["version"] == 2


def test_a_revoked_token_is_refused_by_both_processes_within_a_second_though_cached(make_forge):
    first = make_forge(env=NOTIFY_ONLY)
    second = make_forge(env=NOTIFY_ONLY, database_url=first.database_url)
    token = make_token(first)
    for forge in (first, second):
        assert get(forge, "/api/v1/live/bundles/core", token)[0] == 200

    first.cli("token", "revoke", token[: len("anvil_live_") + 6])
    revoked = time.monotonic()

    for forge in (first, second):
        while get(forge, "/api/v1/live/bundles/core", token)[0] != 401:
            assert time.monotonic() - revoked < 1.0, f"{forge.url} still takes the revoked token"
            time.sleep(0.02)

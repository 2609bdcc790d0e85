"""The LIVE API's ASGI routes and their caches against a real FORGE on SQLite (the embedded default).

The periodic safety-net check is set to a minute here, so what arrives within the deadlines arrived through
the SQLite change check (``PRAGMA data_version``) or the publishing process's own invalidation.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.integration.test_distribution_stream import SSEStream, get, make_token, publish

pytestmark = pytest.mark.integration

CHANGE_CHECK_ONLY = {"ANVIL_RELEASE_POLL_SECONDS": "60", "ANVIL_STREAM_HEARTBEAT_SECONDS": "1"}
SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


def _version_of_releases(forge, token: str) -> int:
    status, _, body = get(forge, "/api/v1/live/releases", token)
    assert status == 200
    return json.loads(body)["releases"][0]["version"]


def test_a_publish_by_the_command_reaches_streams_and_the_api_within_half_a_second(make_forge):
    forge = make_forge(env=CHANGE_CHECK_ONLY)
    token = make_token(forge)
    assert _version_of_releases(forge, token) == 1  # the releases answer is cached now
    stream = SSEStream(forge.url, token).open()
    try:
        assert stream.next(kind="release").json()["version"] == 1

        published = publish(forge, 2)

        event = stream.next(timeout=3, kind="release")
        assert event.json()["version"] == 2
        assert event.at - published < 0.5, "noticed by the change check, not the minute-long periodic check"
        while _version_of_releases(forge, token) != 2:
            assert time.monotonic() - published < 0.5, "the cached releases answer outlived the publish"
            time.sleep(0.02)
    finally:
        stream.close()


def test_a_token_revoked_by_the_command_is_refused_within_a_second_though_it_was_cached(make_forge):
    forge = make_forge(env=CHANGE_CHECK_ONLY)
    token = make_token(forge)
    assert get(forge, "/api/v1/live/bundles/core", token)[0] == 200

    forge.cli("token", "revoke", token[: len("anvil_live_") + 6])
    revoked = time.monotonic()

    while get(forge, "/api/v1/live/bundles/core", token)[0] != 401:
        assert time.monotonic() - revoked < 1.0
        time.sleep(0.02)


def test_the_routes_answer_with_the_django_views_statuses_bodies_and_headers(make_forge):
    forge = make_forge()
    token = make_token(forge)

    status, headers, body = get(forge, "/api/v1/live/bundles/core", token)
    assert status == 200 and headers["content-type"] == "application/json"
    assert headers["cache-control"] == "private, no-cache" and headers["content-length"] == str(len(body))
    assert headers["etag"] == '"' + json.loads(body)["digest"].removeprefix("sha256:") + '"'
    assert SECURITY_HEADERS.items() <= headers.items()

    status, headers, body = get(forge, "/api/v1/live/bundles/core", token, **{"If-None-Match": headers["etag"]})
    assert status == 304 and body == b"" and headers["etag"] and SECURITY_HEADERS.items() <= headers.items()

    cases = [
        ("/api/v1/live/bundles/core?version=abc", token, 400, {"error": "version must be a whole number of 1 or more"}),
        ("/api/v1/live/bundles/nope", token, 404, {"error": "no prompt set 'nope' in this project"}),
        (
            "/api/v1/live/bundles/core?version=99",
            token,
            404,
            {"error": "prompt set 'core' has no version 99 that production may use"},
        ),
        ("/api/v1/live/releases", "anvil_live_" + "x" * 43, 401, {"error": "invalid token"}),
    ]
    for path, raw, expected_status, expected_body in cases:
        status, headers, body = get(forge, path, raw)
        assert (status, json.loads(body)) == (expected_status, expected_body), path
        assert headers["content-type"] == "application/json" and SECURITY_HEADERS.items() <= headers.items()
    assert get(forge, "/api/v1/live/releases", "nope")[1]["www-authenticate"] == 'Bearer realm="anvil"'

    request = urllib.request.Request(forge.url + "/api/v1/live/releases", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405 and refused.value.headers["Allow"] == "GET, HEAD"

    # Not a slug: not these routes' path, so Django answers (its 404), as before.
    assert get(forge, "/api/v1/live/bundles/a.b", token)[0] == 404


def test_a_host_outside_allowed_hosts_is_refused_by_django_as_before(make_forge):
    forge = make_forge()
    token = make_token(forge)
    status, _, _ = get(forge, "/api/v1/live/releases", token, Host="evil.example")
    assert status == 400


def _signed_in_cookie(url: str) -> str:
    import http.cookiejar

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(url + "/login/", timeout=10).read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"csrfmiddlewaretoken": csrf, "username": "editor", "password": "anvil-demo"})
    opener.open(urllib.request.Request(url + "/login/", data=form.encode()), timeout=10)
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)


def test_hundreds_of_requests_on_several_threads_leave_no_more_open_files(make_forge):
    forge = make_forge()
    token = make_token(forge)
    cookie = _signed_in_cookie(forge.url)
    pages = ["/o/acme/", "/o/acme/p/support-bot/", "/o/acme/p/support-bot/s/core/", "/o/acme/audit/", "/healthz"]

    def load(rounds: int) -> None:
        for index in range(rounds):
            path = pages[index % len(pages)]
            request = urllib.request.Request(forge.url + path, headers={"Cookie": cookie})
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200
            assert get(forge, "/api/v1/live/bundles/core", token)[0] == 200

    def burst(rounds: int) -> None:
        threads = [threading.Thread(target=load, args=(rounds,)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def open_files() -> int:
        return len(os.listdir(f"/proc/{forge.process.pid}/fd"))

    burst(5)  # warm: the pool and the stream's database threads have their connections
    before = open_files()
    burst(40)  # 480 page and API requests
    after = open_files()
    assert after <= before + 2, f"open files grew from {before} to {after}"

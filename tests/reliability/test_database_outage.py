"""The FORGE losing its database for a while: 503 with a clear message, and it recovers when it returns.

A real FORGE process and a real host application process; the database is taken away under the FORGE
(SQLite: the file is replaced by a directory; PostgreSQL: the database stops accepting connections).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.reliability.conftest import V1_GREETING, V2_GREETING, make_token, publish

pytestmark = pytest.mark.integration

FORGE_ENV = {"ANVIL_RELEASE_POLL_SECONDS": "0.2", "ANVIL_STREAM_HEARTBEAT_SECONDS": "0.5"}


class DatabaseOutage:
    """Takes a FORGE's database away and gives it back, without touching the FORGE process.

    SQLite: the file (and its WAL) is moved aside and a directory put in its place, so opening it fails.
    PostgreSQL: the database stops accepting connections and its open ones are ended.
    """

    def __init__(self, database_url: str) -> None:
        self.url = database_url

    def _pg(self, sql: str) -> None:
        from tests.forge_process import _admin_execute

        _admin_execute(self.url, sql)

    @property
    def _name(self) -> str:
        from urllib.parse import urlsplit

        return urlsplit(self.url).path.lstrip("/")

    def _sqlite_files(self) -> list[Path]:
        path = Path(self.url.removeprefix("sqlite:///"))
        return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]

    def begin(self) -> None:
        if self.url.startswith("sqlite"):
            for path in self._sqlite_files():
                if path.exists():
                    path.rename(path.with_name(path.name + ".away"))
            self._sqlite_files()[0].mkdir()
        else:
            self._pg(f'ALTER DATABASE "{self._name}" WITH ALLOW_CONNECTIONS false')
            self._pg(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{self._name}' AND pid <> pg_backend_pid()"
            )

    def end(self) -> None:
        if self.url.startswith("sqlite"):
            self._sqlite_files()[0].rmdir()
            for path in self._sqlite_files():
                away = path.with_name(path.name + ".away")
                if away.exists():
                    away.rename(path)
        else:
            self._pg(f'ALTER DATABASE "{self._name}" WITH ALLOW_CONNECTIONS true')


def _get(url: str, token: str | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def _sign_in(base: str) -> tuple[int, str]:
    import http.cookiejar
    import re
    import urllib.parse

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(base + "/login/", timeout=10) as response:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.read().decode()).group(1)
    form = urllib.parse.urlencode({"username": "editor", "password": "anvil-demo", "csrfmiddlewaretoken": token})
    request = urllib.request.Request(base + "/login/", data=form.encode(), headers={"Referer": base + "/login/"})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_forge_losing_its_database_answers_503_with_a_clear_message_and_recovers_when_it_returns(
    make_forge, host_app
):
    forge = make_forge(env=FORGE_ENV)
    token = make_token(forge)
    app = host_app(forge_url=forge.url, token=token).start()
    app.wait_for(lambda e: e["event"] == "connected")
    outage = DatabaseOutage(forge.database_url)
    outage.begin()
    try:
        status, _, body = _get(forge.url + "/healthz")
        assert status == 503 and json.loads(body)["reason"] == "database unavailable"
        for path in ("/api/v1/live/releases", "/api/v1/live/bundles/core"):
            status, content_type, body = _get(forge.url + path, token)
            assert status == 503, (path, status, body[:300])
            assert content_type.startswith("application/json")
            assert "database" in json.loads(body)["error"]
        status, body = _sign_in(forge.url)  # the sign-in page needs no database; signing in does
        assert status == 503, (status, body[:300])
        assert "database" in body and "Traceback" not in body
        time.sleep(1.0)  # the host application keeps serving through the outage
        assert app.texts() == [f"{V1_GREETING} How can I help you today?"] and app.errors() == []
    finally:
        outage.end()
    status, _, _ = _get(forge.url + "/healthz")
    assert status == 200
    publish(forge, 2)
    app.wait_text(V2_GREETING, timeout=15)
    assert app.errors() == []

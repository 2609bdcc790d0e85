"""Backup and restore of the FORGE database, as docs/operations.md describes it, tried on a running FORGE.

SQLite: the online backup API (``sqlite3`` ``.backup``) while the FORGE serves. PostgreSQL (when the suite
runs on it): ``pg_dump --format=custom`` then ``pg_restore`` into a new database. A second FORGE started on
the restored copy serves the same releases and the same bundles, byte for byte (same digests), to the same
token, and keeps its audit trail.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.forge_process import _admin_execute, _with_database, postgres_url
from tests.reliability.conftest import make_token, publish

pytestmark = pytest.mark.integration


def _get(url: str, token: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def _served(forge, token: str) -> dict[str, bytes]:
    """The current releases and every version's bundle, as the LIVE API serves them."""
    served = {"releases": _get(forge.url + "/api/v1/live/releases", token)}
    for version in (1, 2):
        served[f"core v{version}"] = _get(forge.url + f"/api/v1/live/bundles/core?version={version}", token)
    return served


def backup_and_restore(database_url: str, workdir: Path) -> str:
    """Back the database up while the FORGE runs and restore it as a new database; returns the new URL."""
    if database_url.startswith("sqlite"):
        source = database_url.removeprefix("sqlite:///")
        backup = workdir / "backup.sqlite3"
        with contextlib.closing(sqlite3.connect(source)) as live, contextlib.closing(sqlite3.connect(backup)) as copy:
            live.backup(copy)  # consistent even while the FORGE writes (what `sqlite3 DB ".backup FILE"` does)
        restored = workdir / "restored" / "forge.sqlite3"
        restored.parent.mkdir()
        with contextlib.closing(sqlite3.connect(backup)) as copy, contextlib.closing(sqlite3.connect(restored)) as new:
            copy.backup(new)
        return f"sqlite:///{restored}"
    dump = workdir / "forge.dump"
    subprocess.run(["pg_dump", "--format=custom", "--file", str(dump), database_url], check=True, timeout=120)
    name = f"anvil_restored_{uuid.uuid4().hex[:10]}"
    _admin_execute(database_url, f'CREATE DATABASE "{name}"')
    restored = _with_database(database_url, name)
    subprocess.run(
        ["pg_restore", "--no-owner", "--exit-on-error", "--dbname", restored, str(dump)], check=True, timeout=120
    )
    return restored


def test_a_restored_forge_serves_the_same_bundles_with_the_same_digests(make_forge, tmp_path):
    forge = make_forge()
    token = make_token(forge)
    publish(forge, 2)
    before = _served(forge, token)

    restored_url = backup_and_restore(forge.database_url, tmp_path)
    restored = make_forge(database_url=restored_url, env={"ANVIL_PUBLIC_URL": forge.url})
    forge.stop()  # the original is gone: only the restored copy answers

    after = _served(restored, token)
    assert after == before
    releases = json.loads(after["releases"])
    assert [(r["set"], r["version"]) for r in releases["releases"]] == [("core", 2)]
    for version in (1, 2):
        bundle = json.loads(after[f"core v{version}"])
        assert bundle["digest"] == json.loads(before[f"core v{version}"])["digest"]
    restored.cli("publish", "acme/support-bot/core", "--version", "1", "--environment", "staging", "--as", "editor")


@pytest.mark.skipif(postgres_url() is not None, reason="the SQLite procedure (this run is on PostgreSQL)")
def test_the_sqlite3_command_line_backup_in_the_docs_works_on_a_live_database(make_forge, tmp_path):
    import shutil

    if shutil.which("sqlite3") is None:
        pytest.skip("the sqlite3 command is not installed (the Python backup API above is the tested path)")
    forge = make_forge()
    source = forge.database_url.removeprefix("sqlite:///")
    backup = tmp_path / "backup.sqlite3"
    subprocess.run(["sqlite3", source, f".backup '{backup}'"], check=True, timeout=60)
    with contextlib.closing(sqlite3.connect(backup)) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("SELECT count(*) FROM distribution_release").fetchone()[0] >= 1

"""The SQLite change check: another connection's commit is seen, and only commits that change what the LIVE API
serves count (check-ins and page writes do not empty its caches)."""

from __future__ import annotations

import asyncio
import sqlite3

from anvil_forge.distribution.broadcast import DataVersion
from anvil_forge.distribution.models import AccessToken, Release
from anvil_forge.prompts.models import Environment, PromptSetVersion


def _database(path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"CREATE TABLE {Release._meta.db_table} (id INTEGER PRIMARY KEY)")
    connection.execute(f"CREATE TABLE {AccessToken._meta.db_table} (id INTEGER PRIMARY KEY, revoked_at, expires_at)")
    connection.execute(f"CREATE TABLE {PromptSetVersion._meta.db_table} (id INTEGER PRIMARY KEY, reviewed_at)")
    connection.execute(f"CREATE TABLE {Environment._meta.db_table} (id INTEGER PRIMARY KEY, accepts_review_versions)")
    connection.execute("CREATE TABLE checkins (id INTEGER PRIMARY KEY, seen)")
    connection.execute(f"INSERT INTO {AccessToken._meta.db_table} (revoked_at) VALUES (NULL)")
    return connection


def test_only_commits_that_change_what_the_live_api_serves_change_the_fingerprint(tmp_path):
    path = tmp_path / "forge.sqlite3"
    writer = _database(path)
    check = DataVersion(str(path))

    async def scenario() -> list[tuple]:
        seen = [await check.read()]
        writer.execute("INSERT INTO checkins (seen) VALUES ('now')")  # a check-in: not the API's business
        seen.append(await check.read())
        writer.execute(f"INSERT INTO {Release._meta.db_table} DEFAULT VALUES")  # a publish by another process
        seen.append(await check.read())
        writer.execute(f"UPDATE {AccessToken._meta.db_table} SET revoked_at = 'now'")  # a revocation
        seen.append(await check.read())
        await check.close()
        return seen

    initial, after_checkin, after_publish, after_revoke = asyncio.run(scenario())
    assert after_checkin == initial
    assert after_publish != after_checkin
    assert after_revoke != after_publish

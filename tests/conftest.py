"""Fixtures for tests that run real processes: FORGE servers, LIVE clients, browsers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.forge_process import ForgeProcess, drop_templates, new_database

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs a loop in this thread


@pytest.fixture(scope="session", autouse=True)
def _drop_template_databases() -> Iterator[None]:
    yield
    drop_templates()


@pytest.fixture
def make_forge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ForgeProcess]]:
    """Make FORGE processes: ``make_forge(seed_demo=True, start=True, env={...}, database_url=None)``.

    Pass another FORGE's ``database_url`` to run a second process on the same database.
    """
    made: list[ForgeProcess] = []

    def make(
        *,
        seed_demo: bool = True,
        start: bool = True,
        env: dict[str, str] | None = None,
        database_url: str | None = None,
    ) -> ForgeProcess:
        data_dir = tmp_path_factory.mktemp("forge")
        forge = ForgeProcess(
            data_dir=data_dir,
            database_url=database_url or new_database(data_dir, seed_demo=seed_demo),
            extra_env=env or {},
        )
        made.append(forge)
        if start:
            forge.start()
        return forge

    yield make
    owners = {f.database_url for f in made}
    for forge in made:
        forge.stop()
    for url in owners:
        ForgeProcess(data_dir=Path("."), database_url=url).drop_database()


@pytest.fixture
def forge(make_forge: Callable[..., ForgeProcess]) -> ForgeProcess:
    """A running FORGE with the demo data (see ``anvil-forge demo``)."""
    return make_forge()

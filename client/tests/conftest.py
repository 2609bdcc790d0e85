"""Fixtures for the client's unit tests: a stub FORGE on loopback and clients that are always closed."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from forge_stub import TOKEN, StubForge

import anvil_client

# Fast timings so reconnects and state changes happen within a test's patience.
FAST = {
    "heartbeat_interval": 0.2,
    "backoff_initial": 0.05,
    "backoff_max": 0.2,
    "state_check_interval": 0.1,
    "checkin_interval": 60,
    "poll_interval": 0.3,
    "connect_timeout": 2,
}


@pytest.fixture
def stub() -> Iterator[StubForge]:
    forge = StubForge().start()
    yield forge
    forge.stop()


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., anvil_client.Client]]:
    made: list[anvil_client.Client] = []

    def make(stub: StubForge | None = None, **options: Any) -> anvil_client.Client:
        values: dict[str, Any] = {"cache_dir": tmp_path / "cache", **FAST}
        if stub is not None:
            values.update(forge_url=stub.url, token=TOKEN)
        values.update(options)
        client = anvil_client.Client(**values)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()

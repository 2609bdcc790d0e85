"""The LIVE client (``anvil_client``) against a real FORGE in another process (uvicorn on loopback).

Publishes go through the ``anvil-forge`` command (a third process); the FORGE hears of them through its
periodic check, set short here. Demo data: set ``core`` version 1 is live in production, version 2 is
approved and waiting.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import anvil_client
from tests.forge_process import ForgeProcess

pytestmark = pytest.mark.integration

FAST = {"ANVIL_RELEASE_POLL_SECONDS": "0.2", "ANVIL_STREAM_HEARTBEAT_SECONDS": "1"}
V1 = "Hi Ada! How can I help you today?"
V2 = "Hello Ada, welcome back! What can I do for you today?"


def live_token(forge: ForgeProcess, name: str = "client-test") -> str:
    out = forge.cli(
        "token", "create", "acme/support-bot", "--environment", "production", "--kind", "live", "--name", name
    )
    match = re.search(r"anvil_live_[A-Za-z0-9_-]+", out)
    assert match, out
    return match.group(0)


def publish(forge: ForgeProcess, version: int) -> None:
    forge.cli("publish", "acme/support-bot/core", "--version", str(version), "--environment", "production",
              "--as", "editor")


def eventually(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def greeting(client: anvil_client.Client) -> str:
    return client.prompt("greeting.welcome", customer_name="Ada")


@pytest.fixture
def fast_forge(make_forge: Callable[..., ForgeProcess]) -> ForgeProcess:
    return make_forge(env=FAST)


@pytest.fixture
def clients(tmp_path: Path, fast_forge: ForgeProcess) -> Iterator[Callable[..., anvil_client.Client]]:
    token = live_token(fast_forge)
    made: list[anvil_client.Client] = []

    def make(**options: Any) -> anvil_client.Client:
        values = {
            "forge_url": fast_forge.url,
            "token": token,
            "cache_dir": tmp_path / "cache",
            "heartbeat_interval": 1,
            "backoff_initial": 0.1,
            "backoff_max": 0.5,
            "state_check_interval": 0.2,
            "poll_interval": 1,
            **options,
        }
        client = anvil_client.Client(**values)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_a_publish_is_applied_without_restart(fast_forge: ForgeProcess, clients: Any) -> None:
    client = clients()
    assert greeting(client) == V1
    status = client.status()
    assert (status["source"], status["versions"]) == ("forge", {"core": 1})
    assert eventually(lambda: client.status()["connected"])
    # Substitution-only prompts take the fast path with the FORGE's real bundle.
    assert client.prompt("errors.not_found", thing="order 7") == (
        "Sorry, I couldn't find order 7. Could you check the reference and try again?"
    )
    publish(fast_forge, 2)
    assert eventually(lambda: greeting(client) == V2, 10), client.status()
    assert client.status()["versions"] == {"core": 2}


def test_forge_killed_mid_stream_and_restarted(fast_forge: ForgeProcess, clients: Any) -> None:
    client = clients()
    assert greeting(client) == V1
    assert eventually(lambda: client.status()["connected"])
    fast_forge.kill()
    assert eventually(lambda: not client.status()["connected"])
    assert greeting(client) == V1  # the host keeps serving
    fast_forge.start()
    publish(fast_forge, 2)
    assert eventually(lambda: greeting(client) == V2, 10), client.status()
    assert eventually(lambda: client.status()["connected"])


def test_forge_down_at_start_serves_from_the_disk_cache(fast_forge: ForgeProcess, clients: Any) -> None:
    first = clients()
    assert greeting(first) == V1
    first.close()
    fast_forge.stop()
    client = clients()
    started = time.monotonic()
    assert greeting(client) == V1
    assert time.monotonic() - started < 2.5
    status = client.status()
    assert (status["source"], status["connected"]) == ("disk", False)


def test_no_bundle_anywhere_is_one_clear_error(fast_forge: ForgeProcess, clients: Any) -> None:
    fast_forge.stop()
    client = clients(startup_timeout=1)
    with pytest.raises(anvil_client.NotReady) as info:
        greeting(client)
    message = str(info.value)
    assert fast_forge.url in message
    assert "bootstrap" in message


def test_corrupt_cache_file_is_set_aside_and_replaced_from_the_forge(
    fast_forge: ForgeProcess, clients: Any, tmp_path: Path, caplog: Any
) -> None:
    first = clients()
    assert greeting(first) == V1
    first.close()
    cached = tmp_path / "cache" / "bundles" / "core.json"
    cached.write_bytes(cached.read_bytes().replace(b"How can I help", b"Send me your password"))
    with caplog.at_level(logging.ERROR, logger="anvil_client"):
        client = clients()
        assert greeting(client) == V1
    assert "corrupt" in caplog.text
    assert list(cached.parent.glob("core.json.corrupt-*"))
    assert b"How can I help" in cached.read_bytes()  # the FORGE's good bundle was written back


def test_frozen_ignores_a_release_then_sync_takes_it(fast_forge: ForgeProcess, clients: Any) -> None:
    client = clients()
    assert greeting(client) == V1
    client.set_mode("frozen")
    assert eventually(lambda: client.status()["connected"])
    publish(fast_forge, 2)
    assert eventually(lambda: client.status()["available"] == {"core": 2}, 10), client.status()
    assert greeting(client) == V1
    assert client.sync() == {"core": {"version": 2, "previous": 1}}
    assert greeting(client) == V2
    assert client.status()["mode"] == "frozen"


def test_a_pin_holds_a_version_until_unpinned(fast_forge: ForgeProcess, clients: Any, tmp_path: Path) -> None:
    anvil_client.write_host_state(tmp_path / "cache", pin=("core", 1))  # what `anvil pin core 1` does
    client = clients()
    assert greeting(client) == V1
    publish(fast_forge, 2)
    assert eventually(lambda: client.status()["available"] == {"core": 2}, 10), client.status()
    assert greeting(client) == V1
    client.unpin("core")
    assert eventually(lambda: greeting(client) == V2, 10), client.status()
    client.pin("core", 1)  # an older version, taken only because it is pinned
    assert eventually(lambda: greeting(client) == V1, 10), client.status()


def test_the_forge_accepts_the_clients_check_in(fast_forge: ForgeProcess, clients: Any) -> None:
    from anvil_client._sync import Forge

    client = clients(instance_name="web-1\x07")
    assert greeting(client) == V1
    client.prompt("errors.not_found", {"thing": "x", "not-a-name": 1})
    client.set_mode("frozen")
    client.pin("core", 1)
    body = client._sync.checkin_body()
    assert body["usage"] == {"errors.not_found": ["thing"], "greeting.welcome": ["customer_name"]}
    assert (body["mode"], body["pins"], body["versions"], body["name"]) == ("FROZEN", {"core": 1}, {"core": 1}, "web-1")
    Forge(client.config).checkin(body)  # raises unless the FORGE answers 200

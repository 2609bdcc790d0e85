"""Faults of a real FORGE (uvicorn in another process) seen by a real host application process.

The host application renders a prompt every 20 ms; in every scenario it must never get an exception, must
serve the last good prompts throughout, and must take the next release by itself once the FORGE is back.
"""

from __future__ import annotations

import time

import pytest

from tests.reliability.conftest import V1_GREETING, V2_GREETING, make_token, publish

pytestmark = pytest.mark.integration

FORGE_ENV = {"ANVIL_RELEASE_POLL_SECONDS": "0.2", "ANVIL_STREAM_HEARTBEAT_SECONDS": "0.5"}


def test_forge_down_at_client_start_serves_the_disk_cache_then_catches_up_when_it_returns(
    make_forge, host_app, tmp_path
):
    forge = make_forge(env=FORGE_ENV)
    token = make_token(forge)
    cache = tmp_path / "cache"
    first = host_app(forge_url=forge.url, token=token, cache_dir=cache).start()
    first.wait_text(V1_GREETING)
    first.stop()  # the disk cache now holds version 1
    forge.stop()

    app = host_app(forge_url=forge.url, token=token, cache_dir=cache).start()
    started = app.started()
    assert started["seconds"] < 1.0, "a refused connection must not use the whole start-up wait"
    assert started["status"]["source"] == "disk"
    app.wait_text(V1_GREETING)

    forge.start()
    publish(forge, 2)
    app.wait_text(V2_GREETING, timeout=15)
    assert app.errors() == []
    assert app.texts() == [f"{V1_GREETING} How can I help you today?", f"{V2_GREETING} What can I do for you today?"]


def test_forge_killed_mid_stream_keeps_serving_and_takes_the_release_published_while_it_was_away(
    make_forge, host_app
):
    forge = make_forge(env=FORGE_ENV)
    token = make_token(forge)
    app = host_app(forge_url=forge.url, token=token).start()
    app.wait_for(lambda e: e["event"] == "connected")
    forge.kill()  # SIGKILL: no goodbye on the stream
    time.sleep(1.0)
    publish(forge, 2)  # the database changes while no FORGE process runs
    forge.start()
    app.wait_text(V2_GREETING, timeout=15)
    assert app.errors() == []
    assert len(app.texts()) == 2, "version 1 served without a gap until version 2 arrived"


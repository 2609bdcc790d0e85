"""The sync thread against a real loopback HTTP/SSE server (forge_stub), as it would talk to a FORGE."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from forge_stub import TOKEN, StubForge, make_bundle

import anvil_client
from anvil_client import NotReady, SyncError, write_bootstrap, write_host_state
from anvil_client._cache import write_disk_bundle
from anvil_client.bundle import load_bundle

MakeClient = Callable[..., anvil_client.Client]


def text(client: anvil_client.Client) -> str:
    return client.prompt("welcome.message", name="Ada")


def eventually(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


def test_first_use_takes_the_current_release_from_the_forge(stub: StubForge, make_client: MakeClient) -> None:
    stub.publish("core", 1)
    client = make_client(stub)
    assert text(client) == "Hello Ada (v1)"
    status = client.status()
    assert status["source"] == "forge"
    assert status["versions"] == {"core": 1}
    assert eventually(lambda: client.status()["connected"])
    assert (Path(client.config.cache_dir) / "bundles" / "core.json").exists()


@pytest.mark.parametrize("inline", [True, False])
def test_a_publish_is_applied_without_restart(stub: StubForge, make_client: MakeClient, inline: bool) -> None:
    stub.inline = inline
    stub.publish("core", 1)
    client = make_client(stub)
    assert text(client) == "Hello Ada (v1)"
    assert eventually(lambda: stub.open_streams() == 1)
    updates: list[dict] = []
    client.on_update(updates.append)
    stub.publish("core", 2)
    assert eventually(lambda: text(client) == "Hello Ada (v2)", 3.0)
    assert eventually(lambda: updates == [{"set": "core", "version": 2, "previous": 1, "source": "forge"}])
    fetched = [path for method, path, _ in stub.requests if "/bundles/core?version=2" in path]
    assert bool(fetched) is (not inline)


def test_frozen_records_a_release_without_applying_it_then_sync_takes_it(
    stub: StubForge, make_client: MakeClient
) -> None:
    stub.publish("core", 1)
    client = make_client(stub)
    assert text(client) == "Hello Ada (v1)"
    client.set_mode("frozen")
    assert eventually(lambda: stub.open_streams() == 1)
    stub.publish("core", 2)
    assert eventually(lambda: client.status()["available"] == {"core": 2})
    assert text(client) == "Hello Ada (v1)"
    assert client.sync() == {"core": {"version": 2, "previous": 1}}
    assert text(client) == "Hello Ada (v2)"
    assert client.status()["mode"] == "frozen"
    assert eventually(lambda: stub.checkins and stub.checkins[-1]["versions"] == {"core": 2})
    assert stub.checkins[-1]["mode"] == "FROZEN"


def test_back_to_accepting_takes_the_recorded_release(stub: StubForge, make_client: MakeClient) -> None:
    stub.publish("core", 1)
    client = make_client(stub)
    client.set_mode("frozen")
    assert text(client) == "Hello Ada (v1)"
    stub.publish("core", 2)
    assert eventually(lambda: client.status()["available"] == {"core": 2})
    client.set_mode("accepting")
    assert eventually(lambda: text(client) == "Hello Ada (v2)", 1.5)


def test_a_pin_takes_exactly_the_pinned_version_and_ignores_newer(stub: StubForge, make_client: MakeClient) -> None:
    stub.publish("core", 1)
    stub.publish("core", 2)
    client = make_client(stub)
    assert text(client) == "Hello Ada (v2)"
    client.pin("core", 1)
    assert eventually(lambda: text(client) == "Hello Ada (v1)", 1.5)
    stub.publish("core", 3)
    assert eventually(lambda: client.status()["available"] == {"core": 3})
    time.sleep(0.3)
    assert text(client) == "Hello Ada (v1)"
    assert client.sync() == {}  # manual sync respects pins
    assert eventually(lambda: stub.checkins[-1]["pins"] == {"core": 1})
    client.unpin("core")
    assert eventually(lambda: text(client) == "Hello Ada (v3)", 1.5)


def test_an_older_release_never_replaces_a_newer_version(
    stub: StubForge, make_client: MakeClient, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    write_disk_bundle(cache, load_bundle(make_bundle("core", 5)))
    stub.publish("core", 3)
    client = make_client(stub, cache_dir=cache)
    assert text(client) == "Hello Ada (v5)"
    assert client.sync() == {}
    assert text(client) == "Hello Ada (v5)"


def test_another_process_changing_the_host_state_is_seen_within_a_second(
    stub: StubForge, make_client: MakeClient
) -> None:
    stub.publish("core", 1)
    client = make_client(stub, state_check_interval=0.5)
    assert text(client) == "Hello Ada (v1)"
    write_host_state(client.config.cache_dir, mode="frozen")  # what `anvil mode frozen` does
    assert eventually(lambda: client.status()["mode"] == "frozen", 1.0)
    write_host_state(client.config.cache_dir, pin=("core", 1))
    assert eventually(lambda: client.status()["pins"] == {"core": 1}, 1.0)


def test_a_host_sync_request_makes_a_running_frozen_client_take_the_new_release(
    stub: StubForge, make_client: MakeClient
) -> None:
    stub.publish("core", 1)
    client = make_client(stub, state_check_interval=0.5)
    assert text(client) == "Hello Ada (v1)"
    client.set_mode("frozen")
    assert eventually(lambda: stub.open_streams() == 1)
    stub.publish("core", 2)
    assert eventually(lambda: client.status()["available"] == {"core": 2})
    assert text(client) == "Hello Ada (v1)"

    write_host_state(client.config.cache_dir, request_sync=True)  # what `anvil sync` does in another process

    assert eventually(lambda: text(client) == "Hello Ada (v2)", 1.5)
    assert client.status()["mode"] == "frozen"
    assert eventually(lambda: stub.checkins and stub.checkins[-1]["versions"] == {"core": 2}, 1.5)


def test_a_host_sync_request_respects_pins(stub: StubForge, make_client: MakeClient) -> None:
    stub.publish("core", 1)
    client = make_client(stub, mode="frozen")
    assert text(client) == "Hello Ada (v1)"
    client.pin("core", 1)
    stub.publish("core", 2)
    assert eventually(lambda: client.status()["available"] == {"core": 2})
    releases_before = _releases_requests(stub)

    write_host_state(client.config.cache_dir, request_sync=True)

    assert eventually(lambda: _releases_requests(stub) > releases_before, 1.5)  # it did sync...
    assert text(client) == "Hello Ada (v1)"  # ...and kept the pinned version


def test_a_sync_request_made_before_a_process_started_is_not_replayed(
    stub: StubForge, make_client: MakeClient, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    write_disk_bundle(cache, load_bundle(make_bundle("core", 1)))
    write_host_state(cache, mode="frozen", request_sync=True)
    stub.publish("core", 1)
    stub.publish("core", 2)
    client = make_client(stub, cache_dir=cache)
    assert text(client) == "Hello Ada (v1)"
    assert eventually(lambda: client.status()["available"] == {"core": 2})
    time.sleep(0.5)  # several state checks
    assert text(client) == "Hello Ada (v1)"

    write_host_state(cache, request_sync=True)

    assert eventually(lambda: text(client) == "Hello Ada (v2)", 1.5)


def test_the_process_that_asks_the_host_to_sync_does_not_sync_twice(stub: StubForge, make_client: MakeClient) -> None:
    stub.publish("core", 1)
    client = make_client(stub, mode="frozen")
    assert text(client) == "Hello Ada (v1)"
    assert eventually(lambda: stub.open_streams() == 1)
    stub.publish("core", 2)

    assert client.sync(host=True) == {"core": {"version": 2, "previous": 1}}

    assert anvil_client.read_host_state(client.config.cache_dir).sync_request == 1
    after = _releases_requests(stub)
    time.sleep(0.5)
    assert _releases_requests(stub) == after


def test_a_failed_sync_asks_nothing_of_the_other_processes(make_client: MakeClient) -> None:
    client = make_client(forge_url="http://127.0.0.1:9", token=TOKEN, connect_timeout=0.5, startup_timeout=0.1)
    with pytest.raises(SyncError):
        client.sync(timeout=0.5, host=True)
    assert anvil_client.read_host_state(client.config.cache_dir).sync_request == 0


def _releases_requests(stub: StubForge) -> int:
    return sum(1 for _, path, _ in stub.requests if path.startswith("/api/v1/live/releases"))


def test_reconnect_resumes_with_last_event_id(stub: StubForge, make_client: MakeClient) -> None:
    stub.publish("core", 1)
    client = make_client(stub)
    assert text(client) == "Hello Ada (v1)"
    stub.publish("core", 2)
    assert eventually(lambda: text(client) == "Hello Ada (v2)")
    stub.drop_streams()
    assert eventually(lambda: len(stub.stream_opens) == 2)
    stream_requests = [headers for _, path, headers in stub.requests if path == "/api/v1/live/stream"]
    assert stream_requests[0].get("Last-Event-ID") == "1"  # after the initial GET of the releases
    assert stream_requests[1].get("Last-Event-ID") == "2"
    stub.publish("core", 3)
    assert eventually(lambda: text(client) == "Hello Ada (v3)")


def test_forge_killed_mid_stream_and_restarted(stub: StubForge, make_client: MakeClient) -> None:
    stub.publish("core", 1)
    client = make_client(stub)
    assert text(client) == "Hello Ada (v1)"
    assert eventually(lambda: client.status()["connected"])
    port = stub.port
    stub.stop()
    assert eventually(lambda: not client.status()["connected"])
    assert text(client) == "Hello Ada (v1)"  # still serving
    assert eventually(lambda: client.status()["last_error"])
    stub.start(port)
    stub.publish("core", 2)
    assert eventually(lambda: text(client) == "Hello Ada (v2)", 3)
    assert eventually(lambda: client.status()["connected"])


def test_polling_takes_releases_when_the_stream_is_unavailable(stub: StubForge, make_client: MakeClient) -> None:
    stub.stream_enabled = False
    stub.publish("core", 1)
    client = make_client(stub, poll_interval=0.3)
    assert text(client) == "Hello Ada (v1)"
    stub.publish("core", 2)
    assert eventually(lambda: text(client) == "Hello Ada (v2)", 2)
    assert not client.status()["connected"]


def test_checkins_report_mode_versions_and_the_ids_and_variables_used(
    stub: StubForge, make_client: MakeClient
) -> None:
    stub.publish("core", 1)
    client = make_client(stub, checkin_interval=0.3, instance_name="web-1").start()
    assert eventually(lambda: stub.checkins)
    client.prompt("welcome.message", name="Ada")
    client.prompt("welcome.message", {"name": "Bob", "extra": 1, "not-a-name": 2, 3: 4})
    assert eventually(lambda: stub.checkins[-1]["usage"] == {"welcome.message": ["extra", "name"]}, 2)
    checkin = stub.checkins[-1]
    assert checkin["name"] == "web-1"
    assert checkin["mode"] == "ACCEPTING"
    assert checkin["versions"] == {"core": 1}
    assert checkin["client_version"] == anvil_client.__version__
    assert len(checkin["instance_id"]) == 32


def test_a_corrupt_release_is_refused_and_the_last_good_bundle_kept(stub: StubForge, make_client: MakeClient) -> None:
    stub.publish("core", 1)
    client = make_client(stub)
    assert text(client) == "Hello Ada (v1)"
    assert eventually(lambda: stub.open_streams() == 1)
    bad = make_bundle("core", 2)
    bad["prompts"][0]["template"] = "Pwned {{ name }}"
    stub.publish(bundle=bad)
    assert eventually(lambda: "digest" in (client.status()["last_error"] or ""))
    assert text(client) == "Hello Ada (v1)"


def test_a_bundle_for_another_project_is_refused(stub: StubForge, make_client: MakeClient) -> None:
    stub.publish("core", 1)
    client = make_client(stub)
    assert text(client) == "Hello Ada (v1)"
    assert eventually(lambda: stub.open_streams() == 1)
    stub.publish(bundle=make_bundle("core", 2, project="other-app"))
    assert eventually(lambda: "other-app" in (client.status()["last_error"] or ""))
    assert text(client) == "Hello Ada (v1)"


def test_revoked_token_keeps_serving_and_says_so(stub: StubForge, make_client: MakeClient) -> None:
    stub.publish("core", 1)
    client = make_client(stub).start()
    assert eventually(lambda: stub.open_streams() == 1)
    stub.revoke()
    assert eventually(lambda: "revoked" in (client.status()["last_error"] or ""))
    assert text(client) == "Hello Ada (v1)"


def test_forge_down_at_start_serves_from_disk_quickly(make_client: MakeClient, tmp_path: Path) -> None:
    from tests.forge_process import free_port

    cache = tmp_path / "cache"
    write_disk_bundle(cache, load_bundle(make_bundle("core", 4)))
    client = make_client(forge_url=f"http://127.0.0.1:{free_port()}", token=TOKEN, cache_dir=cache)
    started = time.monotonic()
    assert text(client) == "Hello Ada (v4)"
    assert time.monotonic() - started < 1.0
    assert client.status()["source"] == "disk"
    assert client.status()["connected"] is False


@pytest.fixture
def silent_server() -> Any:
    """Accepts connections and never answers (a hung FORGE)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(50)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def loop() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def known_connection(cache: Path, url: str) -> None:
    """As after an earlier run (or `anvil connect`): the FORGE said which project this token serves."""
    from anvil_client._state import connection_key, record_connection

    record_connection(cache, connection_key(url, TOKEN), ("acme", "support-bot", "production"))


def test_with_a_disk_cache_the_first_prompt_does_not_wait_for_a_forge_that_never_answers(
    make_client: MakeClient, tmp_path: Path, silent_server: Any
) -> None:
    url, _ = silent_server
    cache = tmp_path / "cache"
    write_disk_bundle(cache, load_bundle(make_bundle("core", 4)))
    known_connection(cache, url)
    client = make_client(forge_url=url, token=TOKEN, cache_dir=cache, startup_timeout=2, connect_timeout=5)
    started = time.monotonic()
    assert text(client) == "Hello Ada (v4)"
    assert time.monotonic() - started < 0.3  # it waited the whole startup_timeout (2 s) before


def test_a_disk_cache_not_yet_known_to_be_this_tokens_project_waits_for_the_forge_bounded(
    make_client: MakeClient, tmp_path: Path, silent_server: Any
) -> None:
    url, _ = silent_server
    cache = tmp_path / "cache"  # perhaps shared with another application (the default ~/.cache/anvil)
    write_disk_bundle(cache, load_bundle(make_bundle("core", 4)))
    client = make_client(forge_url=url, token=TOKEN, cache_dir=cache, startup_timeout=0.5, connect_timeout=5)
    started = time.monotonic()
    assert text(client) == "Hello Ada (v4)"
    assert 0.4 < time.monotonic() - started < 1.0


def test_with_a_bootstrap_file_the_first_prompt_does_not_wait_for_a_forge_that_never_answers(
    make_client: MakeClient, tmp_path: Path, silent_server: Any
) -> None:
    url, _ = silent_server
    bootstrap = tmp_path / "prompts.json"
    write_bootstrap(bootstrap, [load_bundle(make_bundle("core", 3))])
    client = make_client(
        forge_url=url, token=TOKEN, cache_dir=tmp_path / "cache", bootstrap=bootstrap, startup_timeout=2
    )
    started = time.monotonic()
    assert text(client) == "Hello Ada (v3)"
    assert time.monotonic() - started < 0.3


def test_startup_wait_waits_for_the_forge_at_most_startup_timeout_even_with_a_cache(
    make_client: MakeClient, tmp_path: Path, silent_server: Any
) -> None:
    url, _ = silent_server
    cache = tmp_path / "cache"
    write_disk_bundle(cache, load_bundle(make_bundle("core", 4)))
    known_connection(cache, url)
    client = make_client(
        forge_url=url, token=TOKEN, cache_dir=cache, startup_timeout=0.5, connect_timeout=5, startup_wait=True
    )
    started = time.monotonic()
    assert text(client) == "Hello Ada (v4)"
    assert 0.4 < time.monotonic() - started < 1.0


def test_with_nothing_to_serve_the_first_use_waits_at_most_startup_timeout_then_says_what_to_do(
    make_client: MakeClient, tmp_path: Path, silent_server: Any
) -> None:
    url, _ = silent_server
    client = make_client(forge_url=url, token=TOKEN, cache_dir=tmp_path / "cache", startup_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(NotReady, match="has not answered"):
        client.prompt("greeting.welcome", customer_name="Ada")
    assert 0.4 < time.monotonic() - started < 1.0


def test_a_cached_start_takes_the_forges_newer_version_moments_later(
    stub: StubForge, make_client: MakeClient, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    write_disk_bundle(cache, load_bundle(make_bundle("core", 1)))
    known_connection(cache, stub.url)
    stub.publish("core", 2)
    client = make_client(stub, cache_dir=cache)
    assert text(client) == "Hello Ada (v1)"  # at once, from the disk cache
    started = time.monotonic()
    assert eventually(lambda: text(client) == "Hello Ada (v2)", 2)
    assert time.monotonic() - started < 1.0


def test_a_silent_stream_is_dropped_after_the_read_timeout(stub: StubForge, make_client: MakeClient) -> None:
    stub.publish("core", 1)
    stub.heartbeat = 60  # the stub goes quiet: no heartbeats
    client = make_client(stub, heartbeat_interval=0.2, read_timeout=0.6)
    assert text(client) == "Hello Ada (v1)"
    assert eventually(lambda: len(stub.stream_opens) >= 2, 3)
    assert "no data from the FORGE" in (client.status()["last_error"] or "")


def test_reconnects_back_off_exponentially_with_jitter_up_to_the_cap(make_client: MakeClient) -> None:
    body = b'{"error": "busy"}'
    answer = b"HTTP/1.1 503 Busy\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    with busy_forge(answer) as (url, attempts):
        client = make_client(
            forge_url=url, token=TOKEN, backoff_initial=0.1, backoff_max=0.4, poll_interval=100, startup_timeout=0
        )
        client.prompt("x", fallback="")
        assert eventually(lambda: len(attempts) >= 6, 5)
        client.close()
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # Delay n is in [d/2, d] for d = 0.1, 0.2, 0.4, 0.4...: growing, then capped. Lower bounds are exact;
    # upper bounds leave room for a loaded machine.
    assert gaps[0] >= 0.045
    assert gaps[1] >= 0.095
    assert all(gap >= 0.195 for gap in gaps[2:5])
    assert sorted(gaps[2:5])[1] <= 0.8, gaps  # capped at 0.4 (+ scheduling noise), not still doubling


def test_manual_sync_without_a_forge_is_a_clear_error(make_client: MakeClient) -> None:
    with pytest.raises(SyncError, match="ANVIL_FORGE_URL"):
        make_client().sync()


def test_manual_sync_with_an_unreachable_forge_raises_sync_error(make_client: MakeClient) -> None:
    from tests.forge_process import free_port

    client = make_client(forge_url=f"http://127.0.0.1:{free_port()}", token=TOKEN, sync=False)
    with pytest.raises(SyncError, match="cannot reach"):
        client.sync(timeout=1)


def test_wrong_token_is_reported_not_raised(stub: StubForge, make_client: MakeClient, tmp_path: Path) -> None:
    stub.publish("core", 1)
    client = make_client(stub, token="anvil_live_wrong")
    assert client.prompt("welcome.message", fallback="offline") == "offline"
    assert "401" in client.status()["last_error"]


def test_close_stops_the_sync_thread(stub: StubForge, make_client: MakeClient) -> None:
    stub.publish("core", 1)
    client = make_client(stub)
    text(client)
    assert any(t.name == "anvil.sync" for t in threading.enumerate())
    client.close()
    assert eventually(lambda: not any(t.name == "anvil.sync" for t in threading.enumerate()), 3)
    assert eventually(lambda: stub.open_streams() == 0)


def test_no_sync_thread_before_first_use(stub: StubForge, make_client: MakeClient) -> None:
    make_client(stub)
    assert not any(t.name == "anvil.sync" for t in threading.enumerate())
    assert stub.requests == []


def test_sse_stream_parsing_handles_crlf_cr_multiline_and_split_chunks() -> None:
    from anvil_client._http import EventStream

    stream = EventStream.__new__(EventStream)
    stream.__dict__.update({})  # slots-free object: set the parser state by hand
    stream._buffer = b""
    stream._chunked = False
    stream._event_type = ""
    stream._data = []
    stream._pending_id = None
    stream.last_event_id = None
    stream.retry_ms = None
    raw = b"retry: 250\r\n: heartbeat\r\n\r\nevent: release\rid: 7\rdata: {\"a\":\rdata: 1}\r\revent: x\ndata: y\n\n"
    events = []
    for i in range(len(raw)):  # one byte at a time
        stream._buffer += raw[i : i + 1]
        events.extend(stream._parse_lines())
    assert [(e.event, e.data, e.id) for e in events] == [("release", '{"a":\n1}', "7"), ("x", "y", None)]
    assert json.loads(events[0].data.replace("\n", "")) == {"a": 1}
    assert stream.retry_ms == 250
    assert stream.last_event_id == "7"


def test_mode_change_while_disconnected_is_applied_at_once(stub: StubForge, make_client: MakeClient) -> None:
    stub.publish("core", 1)
    client = make_client(stub, poll_interval=100, mode="frozen")
    assert text(client) == "Hello Ada (v1)"
    assert eventually(lambda: stub.open_streams() == 1)
    stub.publish("core", 2)
    assert eventually(lambda: client.status()["available"] == {"core": 2})
    stub.stream_enabled = False  # the stream goes away (404); polling is far off
    stub.drop_streams()
    assert eventually(lambda: not client.status()["connected"])
    client.set_mode("accepting")
    assert eventually(lambda: text(client) == "Hello Ada (v2)", 3)


def _fake_uwsgi(monkeypatch: pytest.MonkeyPatch, *, has_threads: int, worker_id: int, **opt: Any) -> Any:
    import sys
    import types

    fake = types.ModuleType("uwsgi")
    fake.opt = {"master": True, **opt}  # type: ignore[attr-defined]
    fake.has_threads = has_threads  # type: ignore[attr-defined]
    fake.worker_id = lambda: worker_id  # type: ignore[attr-defined]
    fake.mule_id = lambda: 0  # type: ignore[attr-defined]
    fake.i_am_the_spooler = lambda: False  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uwsgi", fake)
    return fake


def test_uwsgi_without_threads_is_reported_once_with_the_fix(
    stub: StubForge, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    import logging

    _fake_uwsgi(monkeypatch, has_threads=0, worker_id=1)
    stub.publish("core", 1)
    with caplog.at_level(logging.WARNING, logger="anvil_client"):
        make_client(stub).start()
    warnings = [r for r in caplog.records if "has_threads is 0" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "--enable-threads" in warnings[0].getMessage()


def test_uwsgi_with_threads_on_by_default_is_not_reported(
    stub: StubForge, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    import logging

    _fake_uwsgi(monkeypatch, has_threads=1, worker_id=1)  # 2.0.27+: no --enable-threads in opt, threads on
    stub.publish("core", 1)
    with caplog.at_level(logging.INFO, logger="anvil_client"):
        client = make_client(stub)
        assert text(client) == "Hello Ada (v1)"
    assert "thread" not in caplog.text.lower()


def test_in_a_uwsgi_master_no_thread_runs_and_the_hot_path_stays_empty(
    stub: StubForge, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_uwsgi(monkeypatch, has_threads=1, worker_id=0)
    stub.publish("core", 1)
    before = {t.ident for t in threading.enumerate()}
    client = make_client(stub)
    assert text(client) == "Hello Ada (v1)"  # fetched once, synchronously, in the master
    assert {t.ident for t in threading.enumerate()} == before  # no thread left behind to hang a fork
    assert client._prompts == {}  # a worker's first prompt() misses it and starts the worker's sync
    assert not client.status()["started"]
    assert stub.open_streams() == 0
    assert callable(fake.post_fork_hook)


def test_a_cache_left_by_another_project_is_replaced_even_by_a_lower_version(
    stub: StubForge, make_client: MakeClient, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    write_disk_bundle(cache, load_bundle(make_bundle("core", 9, project="other-app")))
    stub.publish("core", 2)
    client = make_client(stub, cache_dir=cache)
    assert text(client) == "Hello Ada (v2)"
    assert client.get("welcome.message")["version"] == 2


def test_once_the_forge_named_the_project_a_restart_serves_its_cache_at_once_and_never_another_projects(
    stub: StubForge, make_client: MakeClient, tmp_path: Path, silent_server: Any
) -> None:
    from anvil_client._state import connection_key, read_host_state, record_connection

    cache = tmp_path / "cache"
    stub.publish("core", 2)
    first = make_client(stub, cache_dir=cache)
    assert text(first) == "Hello Ada (v2)"
    identity = read_host_state(cache).connections[connection_key(stub.url, TOKEN)]
    assert identity == ("acme", "support-bot", "production")  # what the FORGE said this token serves
    first.close()
    write_disk_bundle(cache, load_bundle(make_bundle("extra", 9, project="other-app")))  # another app's set
    url, _ = silent_server  # now the FORGE hangs: it stands at another address, so record it there too
    record_connection(cache, connection_key(url, TOKEN), identity)
    hung = make_client(forge_url=url, token=TOKEN, cache_dir=cache, startup_timeout=2)
    started = time.monotonic()
    assert text(hung) == "Hello Ada (v2)"
    assert time.monotonic() - started < 0.3
    assert hung.status()["versions"] == {"core": 2}  # not the other project's set


def test_a_release_whose_changed_template_cannot_compile_is_refused(stub: StubForge, make_client: MakeClient) -> None:
    stub.publish("core", 1)
    client = make_client(stub)
    assert text(client) == "Hello Ada (v1)"
    assert eventually(lambda: stub.open_streams() == 1)
    stub.publish("core", 2, text="Hello {% if %}")  # a valid bundle whose template is not valid Jinja2
    assert eventually(lambda: "does not compile" in (client.status()["last_error"] or ""))
    assert text(client) == "Hello Ada (v1)"
    assert client.status()["versions"] == {"core": 1}


def test_a_failed_bundle_fetch_is_retried_while_the_stream_stays_up(stub: StubForge, make_client: MakeClient) -> None:
    stub.inline = False
    stub.publish("core", 1)
    client = make_client(stub)
    assert text(client) == "Hello Ada (v1)"
    assert eventually(lambda: stub.open_streams() == 1)
    stub.fail_next_bundles = 2
    stub.publish("core", 2)
    assert eventually(lambda: text(client) == "Hello Ada (v2)", 5)
    assert len(stub.stream_opens) == 1  # no reconnect was needed


def test_before_the_releases_list_answers_bundles_must_match_the_project_being_served(
    stub: StubForge, make_client: MakeClient, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    write_disk_bundle(cache, load_bundle(make_bundle("core", 1)))
    stub.releases_fail = True
    stub.publish(bundle=make_bundle("core", 2, project="other-app"))
    client = make_client(stub, cache_dir=cache)
    assert text(client) == "Hello Ada (v1)"
    assert eventually(lambda: "other-app" in (client.status()["last_error"] or ""))
    assert text(client) == "Hello Ada (v1)"


def test_retry_after_on_the_stream_is_a_minimum_delay(make_client: MakeClient) -> None:
    answer = b"HTTP/1.1 503 Busy\r\nRetry-After: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    with busy_forge(answer) as (url, attempts):
        client = make_client(
            forge_url=url, token=TOKEN, backoff_initial=0.05, backoff_max=0.1, poll_interval=100, startup_timeout=0
        )
        client.prompt("x", fallback="")
        assert eventually(lambda: len(attempts) >= 3, 8)
        client.close()
    assert all(b - a >= 0.99 for a, b in itertools.pairwise(attempts[:3])), attempts


@contextlib.contextmanager
def busy_forge(answer: bytes) -> Iterator[tuple[str, list[float]]]:
    """A loopback FORGE that answers every request with ``answer`` (an overloaded one: 503); yields its URL
    and the times stream requests arrived."""
    attempts: list[float] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(50)
    server.settimeout(0.1)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn = server.accept()[0]
            except OSError:
                continue
            if b"/stream" in conn.recv(65536):
                attempts.append(time.monotonic())
            conn.sendall(answer)
            conn.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", attempts
    finally:
        stop.set()
        thread.join()
        server.close()


def test_check_ins_report_every_version_applied_since_the_last_one_once(
    stub: StubForge, make_client: MakeClient
) -> None:
    stub.publish("core", 1)
    client = make_client(stub)
    assert text(client) == "Hello Ada (v1)"
    assert eventually(lambda: stub.open_streams() == 1)
    stub.publish("core", 2)
    stub.publish("core", 3)  # version 2 is superseded at once: the FORGE must still hear it was applied
    assert eventually(lambda: text(client) == "Hello Ada (v3)")

    def reported() -> list[int]:
        return [n for c in list(stub.checkins) for n in c.get("applied", {}).get("core", [])]

    assert eventually(lambda: 3 in reported(), 3)
    assert sorted(reported()) == [1, 2, 3]  # each once, the superseded version 2 included
    count = len(stub.checkins)
    client.sync()  # another check-in: nothing new was applied, so nothing is reported again
    assert eventually(lambda: len(stub.checkins) > count, 3)
    assert "applied" not in stub.checkins[-1]



@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_during_a_request_does_not_keep_the_parents_socket(stub: StubForge) -> None:
    from anvil_client._http import open_connection

    in_flight = open_connection("http", "127.0.0.1", stub.port, 5)  # as if the sync thread were mid-request
    reader = in_flight.makefile("rb")  # as http.client's response does: close() alone would not close the fd
    number = in_flight.fileno()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its copy of the socket must be closed by the fork hook
        try:
            os.fstat(number)
            answer = b"open"
        except (OSError, ValueError):
            answer = b"closed"
        os.write(write, answer)
        os._exit(0)
    os.close(write)
    answer = os.read(read, 10)
    os.waitpid(pid, 0)
    os.close(read)
    assert answer == b"closed"
    in_flight.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")  # the parent's still works
    assert reader.read(12).startswith(b"HTTP/1.")
    reader.close()
    in_flight.close()


WARM_PROBE = """
import sys, time, anvil_client
client = anvil_client.Client(forge_url=sys.argv[1], token=sys.argv[2], cache_dir=sys.argv[3], heartbeat_interval=1)
client.start()
deadline = time.monotonic() + 10
while not client.status()["connected"] and time.monotonic() < deadline:
    time.sleep(0.01)
deadline = time.monotonic() + float(sys.argv[4])
while "jinja2" not in sys.modules and time.monotonic() < deadline:
    time.sleep(0.01)
print(client.status()["connected"], "jinja2" in sys.modules)
client.close()
"""


@pytest.mark.parametrize(
    ("template", "loaded"),
    [("{% if name %}Hello {{ name }}{% endif %}", True), ("Hello {{ name }}", False)],
)
def test_once_the_stream_is_open_the_template_engine_is_loaded_if_a_prompt_needs_it(
    stub: StubForge, tmp_path: Path, template: str, loaded: bool
) -> None:
    """A pushed release compiles its changed templates before the swap: the first one after start-up must not
    pay Jinja2's import there (60 to 110 ms between the event and the new text). The sync thread loads it as
    soon as the stream is open, before any render asked for it, and only when a served prompt needs it."""
    import subprocess
    import sys

    stub.publish("core", 1, text=template)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "DJANGO_"))}
    out = subprocess.run(
        # Loaded: wait as long as a loaded machine may need (it stops when Jinja2 is there); not: a second.
        [sys.executable, "-c", WARM_PROBE, stub.url, TOKEN, str(tmp_path / "cache"), "15" if loaded else "1"],
        env=env, capture_output=True, text=True, timeout=30, check=True,
    ).stdout.split()
    assert out == ["True", str(loaded)]

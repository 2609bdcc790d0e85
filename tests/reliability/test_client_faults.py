"""A real host application process against a FORGE that misbehaves (tests/reliability/fake_forge.py).

In every scenario the host application must never get an exception, must keep serving the last good
prompts, must say why in its status, and must recover by itself once the FORGE behaves again.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest

from anvil_client._cache import write_disk_bundle
from anvil_client.bundle import load_bundle
from tests.forge_process import free_port
from tests.reliability.fake_forge import TOKEN, FakeForge, demo_bundle

pytestmark = pytest.mark.integration


def cache_with(path: Path, version: int, **identity: str) -> Path:
    write_disk_bundle(path, load_bundle(demo_bundle(version, **identity)))
    return path


def test_forge_that_accepts_and_never_answers_costs_at_most_the_start_up_wait_then_recovers(
    fake, host_app, tmp_path
):
    fake.publish(demo_bundle(1))
    fake.publish(demo_bundle(2))
    fake.faults.update(releases="hang", stream="hang")
    app = host_app(
        forge_url=fake.url, token=TOKEN, cache_dir=cache_with(tmp_path / "cache", 1),
        client={"startup_timeout": 0.5, "connect_timeout": 1},
    ).start()
    started = app.started()
    assert 0.4 <= started["seconds"] < 1.5
    assert started["status"]["source"] == "disk"
    app.wait_text("(v1)")
    time.sleep(1.5)  # several hung attempts
    fake.faults.clear()
    app.wait_text("(v2)", timeout=10)
    assert app.errors() == []


@pytest.mark.parametrize("status", [500, 502])
def test_forge_answering_server_errors_keeps_the_last_good_prompts_then_recovers(
    fake, host_app, tmp_path, status
):
    fake.publish(demo_bundle(1))
    fake.publish(demo_bundle(2))
    fake.faults.update(releases=("status", status), stream=("status", status), bundle=("status", status))
    app = host_app(forge_url=fake.url, token=TOKEN, cache_dir=cache_with(tmp_path / "cache", 1)).start()
    app.wait_text("(v1)")
    time.sleep(1.0)
    assert len(fake.times("stream")) >= 2, "the client keeps trying"
    fake.faults.clear()
    app.wait_text("(v2)", timeout=10)
    assert app.errors() == []
    assert app.texts() == ["Hi Ada! (v1)", "Hi Ada! (v2)"]


@pytest.mark.parametrize(
    ("name", "hook", "reason"),
    [
        ("truncated", lambda body: body[: len(body) // 2], "not valid JSON"),
        ("empty", lambda body: b"", "not valid JSON"),
        ("not UTF-8", lambda body: body.replace(b"Hi ", b"\xff\xfe "), "not UTF-8"),
        ("template changed after signing", lambda body: body.replace(b"Hi ", b"Pwned "), "digest"),
        ("digest replaced", lambda body: _flip_digest(body), "digest"),
    ],
)
def test_corrupt_bundles_are_refused_and_the_last_good_one_kept_until_a_good_one_comes(
    fake, host_app, tmp_path, name, hook, reason
):
    fake.publish(demo_bundle(1))
    app = host_app(forge_url=fake.url, token=TOKEN, cache_dir=tmp_path / "cache").start()
    app.wait_text("(v1)")
    app.wait_for(lambda e: e["event"] == "connected")
    fake.bundle_hook = hook
    fake.publish(demo_bundle(2))
    deadline = time.monotonic() + 5
    while len(fake.times("bundle")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert app.texts() == ["Hi Ada! (v1)"], f"{name} bundle must not be used"
    cached = json.loads((tmp_path / "cache" / "bundles" / "core.json").read_bytes())
    assert cached["version"] == 1, "the disk cache keeps the last good bundle"
    assert reason in last_error_in_log(app)
    fake.bundle_hook = None
    fake.publish(demo_bundle(3))
    app.wait_text("(v3)", timeout=10)
    assert app.errors() == []


def _flip_digest(body: bytes) -> bytes:
    """The bundle with one hex digit of its ``digest`` changed (content untouched)."""
    start = body.index(b'"digest":"sha256:') + len(b'"digest":"sha256:')
    digit = b"1" if body[start : start + 1] == b"0" else b"0"
    return body[:start] + digit + body[start + 1 :]


def last_error_in_log(app) -> str:
    return app.log()


@pytest.mark.parametrize(
    "identity", [{"project": "other-app"}, {"environment": "staging"}, {"organisation": "globex"}]
)
def test_a_bundle_for_another_project_or_environment_is_refused(fake, host_app, tmp_path, identity):
    fake.publish(demo_bundle(1))
    app = host_app(forge_url=fake.url, token=TOKEN, cache_dir=tmp_path / "cache").start()
    app.wait_text("(v1)")
    app.wait_for(lambda e: e["event"] == "connected")
    fake.publish(demo_bundle(2, **identity))
    time.sleep(1.5)
    assert app.texts() == ["Hi Ada! (v1)"]
    assert app.errors() == []


def test_an_older_version_than_the_one_running_is_never_taken(fake, host_app, tmp_path):
    fake.publish(demo_bundle(2))
    app = host_app(forge_url=fake.url, token=TOKEN, cache_dir=cache_with(tmp_path / "cache", 3)).start()
    app.wait_text("(v3)")
    app.wait_for(lambda e: e["event"] == "connected")
    time.sleep(1.0)
    fake.publish(demo_bundle(1))
    time.sleep(1.0)
    assert app.texts() == ["Hi Ada! (v3)"]
    assert app.errors() == []


def test_a_full_disk_during_an_update_serves_the_update_from_memory_and_keeps_the_cache_whole(
    fake, host_app, tmp_path
):
    cache = cache_with(tmp_path / "cache", 1)
    before = (cache / "bundles" / "core.json").read_bytes()
    fake.publish(demo_bundle(1))
    app = host_app(forge_url=fake.url, token=TOKEN, cache_dir=cache, max_file_bytes=0).start()
    app.wait_text("(v1)")
    app.wait_for(lambda e: e["event"] == "connected")
    fake.publish(demo_bundle(2))
    app.wait_text("(v2)")
    app.stop()
    assert "cannot write set core version 2 to the disk cache" in app.log()
    assert (cache / "bundles" / "core.json").read_bytes() == before, "the old bundle stays whole"
    assert [p.name for p in (cache / "bundles").iterdir()] == ["core.json"], "no temp file left behind"
    assert app.errors() == []


def test_corrupt_cache_at_start_is_set_aside_and_the_bootstrap_file_serves_until_the_forge_answers(
    host_app, tmp_path
):
    from anvil_client._cache import write_bootstrap

    cache = tmp_path / "cache"
    (cache / "bundles").mkdir(parents=True)
    (cache / "bundles" / "core.json").write_bytes(b'{"format": "anvil.bundle/1", "set": "co')  # torn write
    bootstrap = write_bootstrap(tmp_path / "prompts.json", [demo_bundle(1)])
    port = free_port()
    app = host_app(forge_url=f"http://127.0.0.1:{port}", token=TOKEN, cache_dir=cache, bootstrap=bootstrap).start()
    started = app.started()
    assert started["status"]["source"] == "bootstrap"
    app.wait_text("(v1)")
    assert [p.name.startswith("core.json.corrupt-") for p in (cache / "bundles").iterdir()] == [True]
    fake = FakeForge()
    fake.publish(demo_bundle(2))
    fake.start(port)
    try:
        app.wait_text("(v2)", timeout=10)
    finally:
        fake.stop()
    assert app.errors() == []


@pytest.mark.parametrize("skew", [-3 * 3600, 3 * 3600])
def test_a_host_clock_hours_off_changes_nothing(fake, host_app, tmp_path, skew):
    fake.publish(demo_bundle(1))
    app = host_app(forge_url=fake.url, token=TOKEN, cache_dir=tmp_path / "cache", clock_skew=skew).start()
    app.wait_text("(v1)")
    app.wait_for(lambda e: e["event"] == "connected")
    fake.publish(demo_bundle(2))
    app.wait_text("(v2)")
    deadline = time.monotonic() + 5
    while not any(c["versions"] == {"core": 2} for c in fake.checkins) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(c["versions"] == {"core": 2} for c in fake.checkins), "check-ins go on"
    assert app.errors() == []


def test_stream_503_with_retry_after_is_honoured_before_reconnecting(fake, host_app, tmp_path):
    fake.publish(demo_bundle(1))
    fake.faults.update(stream=("status", 503, {"Retry-After": "1"}))
    app = host_app(
        forge_url=fake.url, token=TOKEN, cache_dir=cache_with(tmp_path / "cache", 1),
        client={"backoff_initial": 0.05, "backoff_max": 0.1},
    ).start()
    app.wait_text("(v1)")
    deadline = time.monotonic() + 6
    while len(fake.times("stream")) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    attempts = fake.times("stream")
    assert len(attempts) >= 3
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert min(gaps) >= 0.95, f"reconnected sooner than Retry-After: 1 asked: {gaps}"
    assert app.errors() == []


def test_a_release_whose_bundle_fetch_failed_once_is_retried_while_the_stream_stays_up(fake, host_app, tmp_path):
    """A passing network fault on the bundle fetch must not leave the instance behind until the next publish."""
    fake.publish(demo_bundle(1))
    app = host_app(forge_url=fake.url, token=TOKEN, cache_dir=tmp_path / "cache").start()
    app.wait_text("(v1)")
    app.wait_for(lambda e: e["event"] == "connected")
    fake.faults["bundle"] = ("status", 503)
    fake.publish(demo_bundle(2))
    deadline = time.monotonic() + 5
    while not fake.times("bundle")[1:] and time.monotonic() < deadline:
        time.sleep(0.05)
    fake.faults.clear()
    app.wait_text("(v2)", timeout=10)


def test_a_bundle_for_another_project_is_refused_even_when_the_stream_comes_back_before_the_releases_list(
    host_app, tmp_path
):
    """FORGE down at start: the stream (reconnecting every second) may answer before the 30 s poll does."""
    port = free_port()
    app = host_app(
        forge_url=f"http://127.0.0.1:{port}", token=TOKEN, cache_dir=cache_with(tmp_path / "cache", 1),
        client={"poll_interval": 30, "backoff_initial": 0.2, "backoff_max": 0.2},
    ).start()
    app.wait_text("(v1)")
    other = FakeForge()
    other.publish(demo_bundle(2, project="other-app"))
    other.faults["releases"] = ("status", 503)
    other.start(port)
    try:
        deadline = time.monotonic() + 5
        while len(other.times("bundle")) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert app.texts() == ["Hi Ada! (v1)"], "a bundle for another project replaced the running prompts"
    finally:
        other.stop()

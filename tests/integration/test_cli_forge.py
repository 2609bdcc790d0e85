"""The `anvil` command against a real FORGE process: connect, status, sync, mode, pin, pull."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from anvil_client import Client, Config, read_bootstrap, read_host_state

pytestmark = pytest.mark.integration


def anvil(app: Path, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_")}
    if token is not None:
        env["ANVIL_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "anvil_client._cli", *args, "--path", str(app)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def live_token(forge) -> str:
    out = forge.cli("token", "create", "acme/support-bot", "--environment", "production", "--kind", "live",
                    "--name", "cli test")
    return out.split()[0]


def publish_v2(forge) -> None:
    forge.cli("publish", "acme/support-bot/core", "--version", "2", "--environment", "production", "--as", "editor")


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "app"
    path.mkdir()
    return path


@pytest.fixture
def connected(forge, app):
    token = live_token(forge)
    result = anvil(app, "connect", forge.url, "--token", token)
    assert result.returncode == 0, result.stderr
    return app, token


def test_connect_checks_the_token_records_the_forge_and_pulls_the_prompts(forge, app):
    token = live_token(forge)

    result = anvil(app, "connect", forge.url, "--token", token)

    assert result.returncode == 0, result.stderr
    assert "acme/support-bot (production)" in result.stdout and "core v1" in result.stdout
    settings = (app / "anvil.toml").read_text()
    assert tomllib.loads(settings)["anvil"]["forge_url"] == forge.url
    assert token not in settings
    assert tomllib.loads((app / "anvil.credentials").read_text())["token"] == token
    assert "anvil.credentials" in (app / ".gitignore").read_text().splitlines()
    cached = json.loads((app / ".anvil" / "bundles" / "core.json").read_text())
    assert (cached["set"], cached["version"]) == ("core", 1)


def test_connect_with_a_wrong_token_fails_clearly_and_records_nothing(forge, app):
    result = anvil(app, "connect", forge.url, "--token", "anvil_live_" + "x" * 43)

    assert result.returncode == 1
    assert "refused the token (401)" in result.stderr
    assert not (app / "anvil.toml").exists() and not (app / "anvil.credentials").exists()


def test_connect_with_a_revoked_token_fails(forge, app):
    token = live_token(forge)
    forge.cli("token", "revoke", token)

    result = anvil(app, "connect", forge.url, "--token", token)

    assert result.returncode == 1 and "401" in result.stderr


def test_connect_to_a_server_that_is_not_a_forge_says_so(forge, app):
    result = anvil(app, "connect", forge.url + "/not-here", "--token", live_token(forge))

    assert result.returncode == 1
    assert "not an Anvil FORGE" in result.stderr


def test_connect_refuses_to_save_the_token_where_git_tracks_it_and_records_nothing(forge, app):
    subprocess.run(["git", "init", "-q"], cwd=app, check=True)
    (app / "anvil.credentials").write_text("")
    subprocess.run(["git", "add", "anvil.credentials"], cwd=app, check=True)

    result = anvil(app, "connect", forge.url, "--token", live_token(forge))

    assert result.returncode == 1
    assert "tracked by git" in result.stderr and "ANVIL_TOKEN" in result.stderr
    assert (app / "anvil.credentials").read_text() == ""
    assert not (app / "anvil.toml").exists()


def test_connect_takes_the_token_from_the_environment_and_may_leave_it_unsaved(forge, app):
    result = anvil(app, "connect", forge.url, "--no-save-token", token=live_token(forge))

    assert result.returncode == 0, result.stderr
    assert "ANVIL_TOKEN" in result.stdout
    assert not (app / "anvil.credentials").exists()
    assert (app / ".anvil" / "bundles" / "core.json").exists()


def test_connect_twice_changes_nothing_the_second_time(connected, forge):
    app, token = connected
    before = {p: p.read_bytes() for p in app.iterdir() if p.is_file()}

    result = anvil(app, "connect", forge.url, "--token", token)

    assert result.returncode == 0, result.stderr
    assert "already up to date" in result.stdout
    assert {p: p.read_bytes() for p in app.iterdir() if p.is_file()} == before


def test_connecting_to_another_environment_sets_the_old_prompts_aside(connected, forge):
    app, _ = connected
    staging = forge.cli("token", "create", "acme/support-bot", "--environment", "staging", "--kind", "live",
                        "--name", "staging").split()[0]

    result = anvil(app, "connect", forge.url, "--token", staging)

    assert result.returncode == 0, result.stderr
    assert "acme/support-bot (staging)" in result.stdout and "moved aside" in result.stdout
    assert not (app / ".anvil" / "bundles" / "core.json").exists()
    assert list((app / ".anvil" / "bundles").glob("core.json.replaced-*"))
    assert json.loads(anvil(app, "status", "--json").stdout)["versions"] == {}


def test_status_shows_what_the_forge_has_that_the_host_does_not(connected, forge):
    app, _ = connected
    publish_v2(forge)

    text = anvil(app, "status")
    data = json.loads(anvil(app, "status", "--json").stdout)

    assert text.returncode == 0
    assert "Set core: v1, FORGE has v2" in text.stdout
    assert data["versions"] == {"core": 1}
    assert data["forge"]["reachable"] is True and data["forge"]["releases"] == {"core": 2}
    assert data["connected"] is True and "started" not in data


def test_status_with_the_forge_down_still_shows_the_cache(connected, forge):
    app, _ = connected
    forge.stop()

    result = anvil(app, "status", "--timeout", "2")

    assert result.returncode == 0
    assert "unreachable" in result.stdout and "Set core: v1" in result.stdout


def test_sync_takes_a_new_release_even_when_frozen(connected, forge):
    app, _ = connected
    assert anvil(app, "mode", "frozen").returncode == 0
    publish_v2(forge)

    result = anvil(app, "sync")

    assert result.returncode == 0, result.stderr
    assert "Set core: v2 (was v1)" in result.stdout
    assert json.loads((app / ".anvil" / "bundles" / "core.json").read_text())["version"] == 2
    assert anvil(app, "sync").stdout.startswith("Up to date: core v2")


# A running application process: answers each line on stdin with its status and the greeting it serves.
RUNNING_APP = """
import json, sys
from anvil_client import Client, Config
client = Client(Config.from_env(start=sys.argv[1])).start()
for _ in sys.stdin:
    status = client.status()
    greeting = client.prompt("greeting.welcome", customer_name="Ada")
    print(json.dumps({**{k: status[k] for k in ("mode", "versions", "available", "connected")}, "greeting": greeting}),
          flush=True)
"""


def test_sync_makes_a_running_frozen_process_serve_the_release_it_ignored(connected, forge):
    app, _ = connected
    assert anvil(app, "mode", "frozen").returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_")}
    process = subprocess.Popen([sys.executable, "-c", RUNNING_APP, str(app)], env=env, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ask() -> dict:
        process.stdin.write("\n")
        process.stdin.flush()
        return json.loads(process.stdout.readline())

    try:
        assert _eventually(lambda: ask()["connected"])
        before = ask()
        assert (before["mode"], before["versions"]) == ("frozen", {"core": 1})
        publish_v2(forge)
        assert _eventually(lambda: ask()["available"] == {"core": 2}), "the running process never heard of v2"
        assert ask()["versions"] == {"core": 1}  # FROZEN: recorded, not applied

        result = anvil(app, "sync")

        assert result.returncode == 0, result.stderr
        assert "Set core: v2 (was v1)" in result.stdout and "Every running process" in result.stdout
        assert _eventually(lambda: ask()["versions"] == {"core": 2}, 1.5)
        after = ask()
        assert after["greeting"] != before["greeting"] and after["mode"] == "frozen"
    finally:
        process.stdin.close()
        process.terminate()
        process.wait(10)


def test_sync_with_the_forge_down_fails_with_exit_1(connected, forge):
    app, _ = connected
    forge.stop()

    result = anvil(app, "sync", "--timeout", "2")

    assert result.returncode == 1 and "sync failed" in result.stderr


def test_pin_fetches_the_version_and_a_running_client_follows(connected, forge):
    app, _ = connected
    publish_v2(forge)
    assert anvil(app, "sync").returncode == 0
    config = Config.from_env({}, start=app, state_check_interval=0.1)
    running = Client(config).start()
    try:
        assert running.status()["versions"] == {"core": 2}

        result = anvil(app, "pin", "core", "1")

        assert result.returncode == 0, result.stderr
        assert "fetched and cached" in result.stdout
        assert read_host_state(app / ".anvil").pins == {"core": 1}
        assert _eventually(lambda: running.status()["versions"] == {"core": 1})
        assert anvil(app, "unpin", "core").returncode == 0
        assert _eventually(lambda: running.status()["versions"] == {"core": 2})
    finally:
        running.close()


def test_mode_from_the_command_reaches_a_running_client_within_a_second(connected, forge):
    app, _ = connected
    running = Client(Config.from_env({}, start=app, state_check_interval=0.1)).start()
    try:
        assert _eventually(lambda: running.status()["connected"])

        assert anvil(app, "mode", "frozen").returncode == 0
        assert _eventually(lambda: running.mode == "frozen", 1.0)
        publish_v2(forge)
        assert _eventually(lambda: running.status()["available"] == {"core": 2})
        assert running.status()["versions"] == {"core": 1}

        assert anvil(app, "mode", "accepting").returncode == 0
        assert _eventually(lambda: running.status()["versions"] == {"core": 2})
    finally:
        running.close()


def test_pin_to_a_version_the_forge_does_not_have_pins_nothing(connected):
    app, _ = connected

    result = anvil(app, "pin", "core", "99")

    assert result.returncode == 1
    assert "no version 99" in result.stderr
    assert read_host_state(app / ".anvil").pins == {}


def test_pull_writes_a_bootstrap_file_a_client_starts_from_without_a_forge(connected, forge, tmp_path):
    app, _ = connected
    out = tmp_path / "ship" / "anvil-bootstrap.json"

    result = anvil(app, "pull", "--out", str(out))

    assert result.returncode == 0, result.stderr
    assert [(b.set, b.version) for b in read_bootstrap(out)] == [("core", 1)]
    forge.stop()
    offline = Client(Config(cache_dir=tmp_path / "empty-cache", bootstrap=out))
    try:
        assert "Grace" in offline.prompt("greeting.welcome", customer_name="Grace")
        assert offline.status()["source"] == "bootstrap"
    finally:
        offline.close()


def test_pull_follows_pins(connected, forge, tmp_path):
    app, _ = connected
    publish_v2(forge)
    assert anvil(app, "pin", "core", "1").returncode == 0

    assert anvil(app, "pull", "--out", str(tmp_path / "b.json")).returncode == 0

    assert [(b.set, b.version) for b in read_bootstrap(tmp_path / "b.json")] == [("core", 1)]


def _eventually(check, timeout: float = 5.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


# -- the commands as a newcomer meets them ---------------------------------------------------------------------


def test_connect_with_a_peer_token_says_a_live_token_is_needed(forge, app):
    peer = forge.cli("token", "create", "acme/support-bot", "--environment", "production", "--kind", "peer",
                     "--name", "eu forge").split()[0]

    result = anvil(app, "connect", forge.url, "--token", peer)

    assert result.returncode == 1
    assert "peer token" in result.stderr and "live token" in result.stderr and "--kind live" in result.stderr
    assert "wrong, expired or revoked" not in result.stderr
    assert not (app / "anvil.toml").exists() and not (app / "anvil.credentials").exists()


def test_status_with_a_refused_token_says_so_and_exits_1(connected, forge):
    app, token = connected
    forge.cli("token", "revoke", token)

    text = anvil(app, "status")
    as_json = anvil(app, "status", "--json")

    assert text.returncode == 1
    assert "refused the token" in text.stdout and "unreachable" not in text.stdout
    assert "Set core: v1" in text.stdout  # what the host serves is still shown
    assert as_json.returncode == 1
    data = json.loads(as_json.stdout)
    assert data["forge"]["token_accepted"] is False and data["connected"] is False


def test_status_with_a_peer_token_says_it_is_a_peer_token(connected, forge):
    app, _ = connected
    peer = forge.cli("token", "create", "acme/support-bot", "--environment", "production", "--kind", "peer",
                     "--name", "eu forge").split()[0]

    result = anvil(app, "status", token=peer)

    assert result.returncode == 1
    assert "peer token" in result.stdout


def test_connect_piped_into_head_exits_quietly_and_finishes_its_work(forge, app):
    entry = Path(sys.executable).with_name("anvil")
    command = [str(entry)] if entry.exists() else [sys.executable, "-m", "anvil_client._cli"]
    token = live_token(forge)
    line = " ".join([*command, "connect", forge.url, "--token", token, "--path", str(app)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_")}

    result = subprocess.run(["bash", "-c", f"set -o pipefail; {line} | head -1"], env=env, capture_output=True,
                            text=True, timeout=60)

    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Token accepted by") and result.stdout.count("\n") == 1
    assert tomllib.loads((app / "anvil.toml").read_text())["anvil"]["forge_url"] == forge.url
    assert (app / ".anvil" / "bundles" / "core.json").exists()

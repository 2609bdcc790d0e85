"""The `anvil` command without a FORGE: parsing, exit codes, the host's decisions, files it writes.

Commands that talk to a FORGE are tested against a real one in tests/integration/test_cli_forge.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from anvil_client import read_host_state, write_bootstrap
from anvil_client._cli import _write_forge_url, build_parser, main
from anvil_client._install import ANVIL_TOML
from anvil_client.bundle import build_bundle


def make_bundle(version: int, set_slug: str = "core") -> dict:
    return build_bundle(
        forge="http://127.0.0.1:8000",
        organisation="acme",
        project="support-bot",
        environment="production",
        set_slug=set_slug,
        version=version,
        approval="approved",
        prompts=[{"id": f"{set_slug}.hello", "template": "Hello {{ name }}!"}],
        created_at="2026-11-25T10:00:00Z",
    )


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("ANVIL_FORGE_URL", "ANVIL_TOKEN", "ANVIL_CACHE_DIR", "ANVIL_MODE", "ANVIL_BOOTSTRAP", "ANVIL_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """An application with anvil.toml and a bootstrap file holding set core version 2 (no FORGE)."""
    write_bootstrap(tmp_path / "prompts.json", [make_bundle(2)])
    settings = ANVIL_TOML.replace('# bootstrap = "anvil-bootstrap.json"', 'bootstrap = "prompts.json"')
    (tmp_path / "anvil.toml").write_text(settings)
    return tmp_path


def run(*argv: str) -> int:
    return main(list(argv))


# -- parsing and exit codes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nope"],
        ["mode"],
        ["mode", "sleeping"],
        ["pin", "core"],
        ["pin", "core", "two"],
        ["pull"],
        ["connect"],
        ["install", "--framework", "rails"],
    ],
)
def test_wrong_usage_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)

    assert exit_info.value.code == 2
    assert "usage: anvil" in capsys.readouterr().err


def test_parser_knows_every_documented_command():
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]

    assert sorted(commands) == ["connect", "install", "mode", "pin", "prompts", "pull", "status", "sync", "unpin"]


def test_entry_point_runs_as_a_program(tmp_path):
    (tmp_path / "anvil.toml").write_text(ANVIL_TOML)
    result = subprocess.run(
        [sys.executable, "-m", "anvil_client._cli", "mode", "frozen", "--path", str(tmp_path)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("ANVIL_")},
    )

    assert result.returncode == 0, result.stderr
    assert read_host_state(tmp_path / ".anvil").mode == "frozen"


def test_connect_without_a_token_is_a_usage_error(tmp_path, capsys):
    assert run("connect", "http://127.0.0.1:9", "--path", str(tmp_path)) == 2
    assert "--token" in capsys.readouterr().err


def test_connect_to_a_url_that_is_not_http_is_a_usage_error(tmp_path, capsys):
    assert run("connect", "ftp://forge", "--token", "anvil_live_x", "--path", str(tmp_path)) == 2
    assert "http:// or https://" in capsys.readouterr().err
    assert not (tmp_path / "anvil.toml").exists()


def test_connect_to_an_unreachable_forge_fails_and_records_nothing(tmp_path, capsys):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    code = run("connect", f"http://127.0.0.1:{port}", "--token", "anvil_live_x", "--path", str(tmp_path))

    assert code == 1
    assert "cannot reach the FORGE" in capsys.readouterr().err
    assert not (tmp_path / "anvil.toml").exists() and not (tmp_path / "anvil.credentials").exists()


# -- mode and pins (the host state in the cache directory) ----------------------------------------------------


def test_mode_frozen_then_accepting_is_written_to_the_host_state(app, capsys):
    assert run("mode", "frozen", "--path", str(app)) == 0
    assert read_host_state(app / ".anvil").mode == "frozen"
    assert "FROZEN" in capsys.readouterr().out

    assert run("mode", "accepting", "--path", str(app)) == 0
    assert read_host_state(app / ".anvil").mode == "accepting"


def test_commands_find_anvil_toml_from_a_subdirectory(app):
    sub = app / "src" / "pkg"
    sub.mkdir(parents=True)

    assert run("mode", "frozen", "--path", str(sub)) == 0

    assert read_host_state(app / ".anvil").mode == "frozen"


def test_anvil_config_names_the_settings_file(app, tmp_path_factory, monkeypatch):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.setenv("ANVIL_CONFIG", str(app / "anvil.toml"))

    assert run("mode", "frozen", "--path", str(elsewhere)) == 0

    assert read_host_state(app / ".anvil").mode == "frozen"


def test_pin_and_unpin_without_a_forge(app, capsys):
    assert run("pin", "core", "2", "--path", str(app)) == 0
    assert read_host_state(app / ".anvil").pins == {"core": 2}
    assert "Pinned set core to version 2" in capsys.readouterr().out

    assert run("unpin", "core", "--path", str(app)) == 0
    assert read_host_state(app / ".anvil").pins == {}
    assert run("unpin", "core", "--path", str(app)) == 0
    assert "was not pinned" in capsys.readouterr().out


def test_pin_to_a_version_that_is_not_cached_says_when_it_applies(app, capsys):
    assert run("pin", "core", "7", "--path", str(app)) == 0

    assert "not in the cache" in capsys.readouterr().out
    assert read_host_state(app / ".anvil").pins == {"core": 7}


def test_pin_with_a_bad_set_or_version_is_a_usage_error(app, capsys):
    assert run("pin", "Not A Slug", "1", "--path", str(app)) == 2
    assert run("pin", "core", "0", "--path", str(app)) == 2
    assert read_host_state(app / ".anvil").pins == {}


# -- status, sync, pull offline -----------------------------------------------------------------------------------


def test_status_json_reports_mode_versions_pins_and_no_forge(app, capsys):
    run("pin", "core", "2", "--path", str(app))
    capsys.readouterr()

    assert run("status", "--json", "--path", str(app)) == 0

    status = json.loads(capsys.readouterr().out)
    assert status["mode"] == "accepting"
    assert status["versions"] == {"core": 2}
    assert status["pins"] == {"core": 2}
    assert status["source"] == "bootstrap"
    assert status["forge"] == {"url": None}
    assert status["connected"] is False


def test_status_text_says_how_to_connect(app, capsys):
    assert run("status", "--path", str(app)) == 0

    out = capsys.readouterr().out
    assert "Mode:       ACCEPTING" in out and "Set core: v2" in out and "anvil connect" in out


def test_status_without_any_prompts_says_so(tmp_path, capsys):
    (tmp_path / "anvil.toml").write_text(ANVIL_TOML)

    assert run("status", "--path", str(tmp_path)) == 0

    assert "none yet" in capsys.readouterr().out


def test_sync_without_a_forge_fails_with_exit_1(app, capsys):
    assert run("sync", "--path", str(app)) == 1
    assert "no FORGE to sync with" in capsys.readouterr().err


def test_pull_without_a_forge_says_to_connect_or_use_the_cache(app, capsys):
    assert run("pull", "--out", str(app / "out.json"), "--path", str(app)) == 1
    assert "--from-cache" in capsys.readouterr().err


def test_pull_from_an_empty_cache_fails_and_writes_nothing(app, capsys):
    assert run("pull", "--from-cache", "--out", str(app / "out.json"), "--path", str(app)) == 1
    assert not (app / "out.json").exists()


def test_a_token_in_anvil_toml_is_refused(app, capsys):
    with (app / "anvil.toml").open("a") as handle:
        handle.write('token = "anvil_live_oops"\n')

    assert run("status", "--path", str(app)) == 1
    assert "must not be in a tracked file" in capsys.readouterr().err


# -- anvil.toml editing --------------------------------------------------------------------------------------


def test_forge_url_replaces_the_commented_example_and_keeps_the_comments(tmp_path):
    path = tmp_path / "anvil.toml"
    path.write_text(ANVIL_TOML)

    _write_forge_url(path, "https://forge.example.org")

    text = path.read_text()
    assert tomllib.loads(text)["anvil"] == {"forge_url": "https://forge.example.org", "cache_dir": ".anvil"}
    assert text.count("forge_url") == 1  # the commented example became the setting
    assert "# The FORGE to follow" in text


def test_forge_url_is_replaced_when_set_and_added_when_there_is_no_table(tmp_path):
    path = tmp_path / "anvil.toml"
    path.write_text('[tool]\nx = 1\n[anvil]\nforge_url = "http://old:1"\nmode = "frozen"\n')
    _write_forge_url(path, "http://new:2")
    assert tomllib.loads(path.read_text()) == {
        "tool": {"x": 1},
        "anvil": {"forge_url": "http://new:2", "mode": "frozen"},
    }

    other = tmp_path / "other.toml"
    other.write_text("[tool]\nx = 1")
    _write_forge_url(other, "http://new:2")
    assert tomllib.loads(other.read_text()) == {"tool": {"x": 1}, "anvil": {"forge_url": "http://new:2"}}


# -- the token never lands in a tracked file -------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_token_is_not_saved_when_git_tracks_the_credentials_file(tmp_path):
    from anvil_client._cli import CommandError, _save_token

    _git(tmp_path, "init", "-q")
    (tmp_path / "anvil.credentials").write_text("placeholder\n")
    _git(tmp_path, "add", "anvil.credentials")

    with pytest.raises(CommandError, match="tracked by git"):
        _save_token(tmp_path / "anvil.toml", "anvil_live_secret")
    assert "anvil_live_secret" not in (tmp_path / "anvil.credentials").read_text()


def test_token_is_saved_ignored_and_private_in_a_git_work_tree(tmp_path):
    from anvil_client._cli import _save_token

    _git(tmp_path, "init", "-q")

    _save_token(tmp_path / "anvil.toml", "anvil_live_secret")

    credentials = tmp_path / "anvil.credentials"
    assert tomllib.loads(credentials.read_text())["token"] == "anvil_live_secret"
    assert credentials.stat().st_mode & 0o777 == 0o600
    ignored = subprocess.run(["git", "check-ignore", "-q", "anvil.credentials"], cwd=tmp_path)
    assert ignored.returncode == 0


# -- the commands as a newcomer meets them (the real program, in a subprocess) ---------------------------------

_ENTRY_POINT = Path(sys.executable).with_name("anvil")
ANVIL = [str(_ENTRY_POINT)] if _ENTRY_POINT.exists() else [sys.executable, "-m", "anvil_client._cli"]
TRACEBACK_WORDS = ("Traceback", "Exception ignored", "BrokenPipeError")


def user_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_")}


def anvil(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ANVIL, *args], cwd=cwd, env=user_env(), capture_output=True, text=True, timeout=60)


def python(cwd: Path, code: str) -> subprocess.CompletedProcess[str]:
    """A host application's process started in ``cwd``."""
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=user_env(), capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def cached_app(tmp_path: Path) -> Path:
    """An application in tmp_path/app with anvil.toml and set core version 3 in its disk cache (no FORGE)."""
    from anvil_client._cache import write_disk_bundle
    from anvil_client.bundle import load_bundle

    app = tmp_path / "app"
    app.mkdir()
    (app / "anvil.toml").write_text(ANVIL_TOML)
    write_disk_bundle(app / ".anvil", load_bundle(make_bundle(3)))
    return app


def test_install_in_an_empty_directory_says_it_found_no_application_and_writes_nothing(tmp_path):
    result = anvil(tmp_path, "install", "--yes")

    assert result.returncode == 1
    assert "found no Python application" in result.stderr and str(tmp_path) in result.stderr
    assert "--path" in result.stderr and "--framework plain" in result.stderr
    assert "plain Python application" not in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_install_with_framework_plain_in_an_empty_directory_still_writes_the_settings(tmp_path):
    result = anvil(tmp_path, "install", "--yes", "--framework", "plain")

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "anvil.toml").exists()


@pytest.mark.parametrize("out", ["prompts.json", "dist/prompts.json", "app/config/prompts.json"])
def test_the_bootstrap_setting_pull_suggests_works_when_followed_literally(cached_app, out):
    work = cached_app.parent  # run from the application's parent, naming the application with --path

    result = anvil(work, "pull", "--from-cache", "--out", out, "--path", "app")

    assert result.returncode == 0, result.stderr
    assert (work / out).exists()
    suggested = re.search(r'bootstrap = ("[^"]+")', result.stdout)
    assert suggested, result.stdout
    settings = (cached_app / "anvil.toml").read_text()
    (cached_app / "anvil.toml").write_text(
        settings.replace('# bootstrap = "anvil-bootstrap.json"', f"bootstrap = {suggested.group(1)}")
    )
    shutil.rmtree(cached_app / ".anvil")  # only the bootstrap file can serve now
    served = python(cached_app, "import anvil_client; print(anvil_client.prompt('core.hello', name='Ada'))")
    assert served.returncode == 0, served.stderr
    assert served.stdout.strip() == "Hello Ada!"


def test_the_bootstrap_variable_pull_suggests_is_an_absolute_path(cached_app):
    result = anvil(cached_app.parent, "pull", "--from-cache", "--out", "dist/prompts.json", "--path", "app")

    assert f"ANVIL_BOOTSTRAP={cached_app.parent / 'dist' / 'prompts.json'}" in result.stdout


def test_not_ready_names_the_bootstrap_file_that_is_missing(tmp_path):
    (tmp_path / "anvil.toml").write_text(ANVIL_TOML.replace('# bootstrap = "anvil-bootstrap.json"',
                                                            'bootstrap = "prompts.json"'))

    result = python(tmp_path, "import anvil_client; anvil_client.prompt('core.hello', name='Ada')")

    assert result.returncode == 1
    raised = result.stderr.strip().splitlines()[-1]
    assert raised.startswith("anvil_client._exceptions.NotReady: ")
    assert f"the bootstrap file {tmp_path / 'prompts.json'} does not exist" in raised


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        (["status", "extra"], "anvil status"),
        (["mode", "frozen", "extra"], "anvil mode"),
        (["pull", "--out", "x.json", "--bogus"], "anvil pull"),
    ],
)
def test_wrong_arguments_print_the_usage_of_the_command_given(command, usage, tmp_path):
    result = anvil(tmp_path, *command)

    assert result.returncode == 2
    assert result.stderr.startswith(f"usage: {usage} "), result.stderr


def into_closed_pipe(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run with stdout into a pipe nobody reads any more (as `| head -1` does once it has its line)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([*ANVIL, *args], cwd=cwd, env=user_env(), stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    finally:
        os.close(write)


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["--help"], 0),
        (["--version"], 0),
        (["status"], 0),
        (["status", "--json"], 0),
        (["mode", "frozen"], 0),
        (["pin", "core", "3"], 0),
        (["unpin", "core"], 0),
        (["pull", "--from-cache", "--out", "shipped.json"], 0),
        (["sync"], 1),
        (["connect", "http://127.0.0.1:9", "--token", "anvil_live_x", "--timeout", "1"], 1),
        (["install", "--dry-run"], 0),
    ],
    ids=lambda value: " ".join(value[:2]) if isinstance(value, list) else None,
)
def test_every_command_exits_quietly_into_a_closed_pipe(command, code, cached_app):
    (cached_app / "worker.py").write_text("print('a plain application')\n")

    result = into_closed_pipe(cached_app, *command)

    assert not any(word in result.stderr for word in TRACEBACK_WORDS), result.stderr
    assert result.returncode == code, result.stderr


def test_mode_into_a_closed_pipe_still_changes_the_mode(cached_app):
    into_closed_pipe(cached_app, "mode", "frozen")

    assert read_host_state(cached_app / ".anvil").mode == "frozen"


@pytest.mark.parametrize("command", ["", *build_parser()._subparsers._group_actions[0].choices])  # type: ignore[union-attr]
def test_every_help_exits_quietly_into_a_closed_pipe(command, tmp_path):
    result = into_closed_pipe(tmp_path, *([command] if command else []), "--help")

    assert not any(word in result.stderr for word in TRACEBACK_WORDS), result.stderr
    assert result.returncode == 0

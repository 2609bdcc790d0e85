"""The `anvil-forge` command as a newcomer meets it: the real program in a subprocess, run in the directory
`make run` set up, as the README writes it (no DEBUG, no SECRET_KEY), and from other directories."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
_ENTRY_POINT = Path(sys.executable).with_name("anvil-forge")
ANVIL_FORGE = [str(_ENTRY_POINT)] if _ENTRY_POINT.exists() else [sys.executable, "-m", "anvil_forge.cli"]
TRACEBACK_WORDS = ("Traceback", "Exception ignored", "BrokenPipeError", "OperationalError")


def user_env(**extra: str) -> dict[str, str]:
    """A newcomer's shell: none of the FORGE's settings set."""
    names = ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "DJANGO_")) and k not in names}
    return {**env, **extra}


def forge(cwd: Path, *args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ANVIL_FORGE, *args], cwd=cwd, env=env or user_env(), capture_output=True, text=True, timeout=120, **kwargs
    )


@pytest.fixture(scope="session")
def made_by_make_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where `make run`'s two set-up steps ran (Makefile: migrate, then demo, with DEBUG=true)."""
    root = tmp_path_factory.mktemp("made-by-make-run")
    for step in (("manage", "migrate", "--no-input"), ("demo",)):
        result = forge(root, *step, env=user_env(DEBUG="true"))
        assert result.returncode == 0, result.stderr
    assert (root / "var" / "secret_key").exists() and (root / "var" / "forge.sqlite3").exists()
    return root


@pytest.fixture
def repo(made_by_make_run: Path, tmp_path: Path) -> Path:
    """A fresh copy of that directory for one test."""
    target = tmp_path / "repo"
    shutil.copytree(made_by_make_run, target)
    return target


def readme_command(pattern: str) -> list[str]:
    """The first command of the README that starts with ``pattern``, split as the shell would."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"`(" + re.escape(pattern) + r"[^`]*)`", text)
    assert match, f"the README has no `{pattern}...` command"
    return shlex.split(match.group(1))


# -- 8. local commands work where `make run` set things up, and say so when they cannot ---------------------


def test_token_create_as_the_readme_writes_it_works_in_the_directory_make_run_set_up(repo):
    command = readme_command("anvil-forge token create acme/")

    result = forge(repo, *command[1:])

    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"anvil_live_[A-Za-z0-9_-]{43}\n", result.stdout), result.stdout
    assert "shown only now" in result.stderr


def test_token_list_revoke_publish_and_peer_list_work_without_debug(repo):
    token = forge(repo, "token", "create", "acme/support-bot", "--environment", "production", "--kind", "live",
                  "--name", "web").stdout.strip()

    listed = forge(repo, "token", "list")
    revoked = forge(repo, "token", "revoke", token[:17])
    published = forge(repo, "publish", "acme/support-bot/core", "--version", "2", "--environment", "production",
                      "--as", "editor")
    peers = forge(repo, "peer", "list")

    for result in (listed, revoked, published, peers):
        assert result.returncode == 0, result.stderr
    assert token[:17] in listed.stdout and "revoked" in revoked.stdout
    assert "Published acme/support-bot/core version 2" in published.stdout


def test_anvil_data_dir_points_at_the_forge_from_another_directory(repo, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    result = forge(elsewhere, "token", "list", env=user_env(ANVIL_DATA_DIR=str(repo / "var")))

    assert result.returncode == 0, result.stderr
    assert "PREFIX" in result.stdout
    assert not (elsewhere / "var").exists()


@pytest.mark.parametrize("debug", ["", "true"])
@pytest.mark.parametrize(
    "command",
    [["token", "list"], ["token", "create", "acme/support-bot", "--environment", "production", "--kind", "live",
                          "--name", "web"], ["demo"], ["peer", "list"], ["serve", "--port", "1"]],
    ids=lambda c: " ".join(c[:2]),
)
def test_from_a_directory_without_a_forge_it_says_how_to_point_at_one_and_creates_nothing(command, debug, tmp_path):
    env = user_env(DEBUG=debug) if debug else user_env()

    result = forge(tmp_path, *command, env=env)

    assert result.returncode == 1
    assert not any(word in result.stderr for word in TRACEBACK_WORDS), result.stderr
    assert "not set up" in result.stderr and str(tmp_path / "var" / "forge.sqlite3") in result.stderr
    assert "ANVIL_DATA_DIR" in result.stderr and "DATABASE_URL" in result.stderr and "make run" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no ./var/ made on the way


def test_a_database_that_was_never_migrated_is_said_to_be_not_set_up(tmp_path):
    database = tmp_path / "empty.sqlite3"
    database.touch()

    result = forge(tmp_path, "token", "list", env=user_env(DEBUG="true", DATABASE_URL=f"sqlite:///{database}"))

    assert result.returncode == 1
    assert not any(word in result.stderr for word in TRACEBACK_WORDS), result.stderr
    assert "not set up" in result.stderr and "anvil-forge manage migrate" in result.stderr


# -- 10. the token alone on stdout ----------------------------------------------------------------------------


def test_a_shell_captures_the_token_alone(repo):
    script = (
        "TOKEN=$(" + shlex.join([*ANVIL_FORGE, "token", "create", "acme/support-bot", "--environment", "production",
                                  "--kind", "live", "--name", "web"]) + ') && printf "%s" "$TOKEN"'
    )

    result = subprocess.run(["bash", "-c", script], cwd=repo, env=user_env(), capture_output=True, text=True,
                            timeout=120)

    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"anvil_live_[A-Za-z0-9_-]{43}", result.stdout), result.stdout
    assert "shown only now" in result.stderr


# -- 14. wrong arguments: the usage of the command that was given ------------------------------------------


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        (["token", "revoke", "anvil_live_abcdef", "extra"], "anvil-forge token revoke"),
        (["token", "revoke", "--bogus", "anvil_live_abcdef"], "anvil-forge token revoke"),
        (["token", "list", "acme/support-bot", "extra"], "anvil-forge token list"),
        (["token", "create", "acme/support-bot", "--environment", "production", "--kind", "live", "--name", "x",
          "--bogus"], "anvil-forge token create"),
        (["peer", "check", "eu", "extra"], "anvil-forge peer check"),
        (["publish", "acme/support-bot/core", "extra", "--version", "2", "--environment", "production", "--as", "x"],
         "anvil-forge publish"),
        (["demo", "extra"], "anvil-forge demo"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_wrong_arguments_print_the_usage_of_the_command_given(command, usage, tmp_path):
    result = forge(tmp_path, *command)

    assert result.returncode == 2
    assert result.stderr.startswith(f"usage: {usage} "), result.stderr
    assert "unrecognized arguments" in result.stderr


# -- 13. a closed pipe ends nothing in a traceback ----------------------------------------------------------------


def into_closed_pipe(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run with stdout into a pipe nobody reads any more (as `| head -1` does once it has its line)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([*ANVIL_FORGE, *args], cwd=cwd, env=user_env(), stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write)


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["demo"], 0),
        (["token", "create", "acme/support-bot", "--environment", "production", "--kind", "live", "--name", "x"], 0),
        (["token", "list"], 0),
        (["token", "revoke", "anvil_live_nothere"], 1),
        (["publish", "acme/support-bot/core", "--version", "2", "--environment", "production", "--as", "editor"], 0),
        (["createuser", "newcomer", "--password", "a-long-password", "--org", "acme", "--role", "viewer"], 0),
        (["peer", "list"], 0),
        (["manage", "showmigrations"], 0),
    ],
    ids=lambda value: " ".join(value[:2]) if isinstance(value, list) else None,
)
def test_every_command_exits_quietly_into_a_closed_pipe(command, code, repo):
    result = into_closed_pipe(repo, *command)

    assert not any(word in result.stderr for word in TRACEBACK_WORDS), result.stderr
    assert result.returncode == code, result.stderr


def test_the_work_is_done_even_when_nobody_reads_the_output(repo):
    into_closed_pipe(repo, "createuser", "newcomer", "--password", "a-long-password", "--org", "acme", "--role",
                     "viewer")

    again = forge(repo, "createuser", "newcomer", "--password", "another-password")

    assert again.returncode == 1 and "already exists" in again.stderr


def _commands() -> list[list[str]]:
    """Every command and subcommand of the parser (so a new one is covered the day it is added)."""
    import argparse

    from anvil_forge.cli import build_parser

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
        found = [prefix]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found.extend(walk(sub, [*prefix, name]))
        return found

    return walk(build_parser(), [])


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c) or "anvil-forge")
def test_every_help_exits_quietly_into_a_closed_pipe(command, tmp_path):
    result = into_closed_pipe(tmp_path, *command, "--help")

    assert not any(word in result.stderr for word in TRACEBACK_WORDS), result.stderr
    assert result.returncode == 0

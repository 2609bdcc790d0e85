"""The README's command reference matches the commands and the Makefile (the commands themselves run as the README
writes them in tests/integration/test_forge_cli.py)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()


def _commands(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(f"{prefix} {name}")
                found.extend(_commands(sub, f"{prefix} {name}"))
    return found


def test_every_anvil_forge_command_and_action_is_in_the_readme():
    from anvil_forge.cli import build_parser

    commands = _commands(build_parser(), "anvil-forge")

    assert "anvil-forge token revoke" in commands and "anvil-forge peer add" in commands
    missing = [c for c in commands if c not in README and not _listed_as_alternatives(c)]
    assert missing == []


def _listed_as_alternatives(command: str) -> bool:
    """`anvil-forge token create|list|revoke` names each of the three."""
    head, _, last = command.rpartition(" ")
    return re.search(re.escape(head) + r" [\w|]*\b" + re.escape(last) + r"\b", README) is not None


def test_every_anvil_command_is_in_the_readme():
    from anvil_client._cli import build_parser

    missing = [c for c in _commands(build_parser(), "anvil") if c not in README]

    assert missing == []


def test_the_ports_and_the_first_runs_duration_are_given():
    assert "FORGE_PORT" in README and "DEMO_PORT" in README
    assert re.search(r"make run FORGE_PORT=\d+ DEMO_PORT=\d+", README)
    assert re.search(r"first `make run`[^.]*\b(seconds|minutes?)\b", README)


def test_make_bench_takes_the_same_time_in_the_readme_and_the_makefile():
    in_readme = re.search(r"`make bench`[^.]*?about (\w+) minutes", README)
    in_makefile = re.search(r"## Run every benchmark \(about (\w+) minutes", MAKEFILE)

    assert in_readme and in_makefile
    assert in_readme.group(1) == in_makefile.group(1)


def test_no_work_in_progress_note_is_left():
    assert "Work in progress" not in README

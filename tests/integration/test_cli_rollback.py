"""``anvil-forge rollback`` in a real process, on a copy of the demo database (core v1 live in production)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.forge_process import ForgeProcess

pytestmark = pytest.mark.integration

SET = "acme/support-bot/core"


def run(forge: ForgeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anvil_forge.cli", *args], env=forge.env, capture_output=True, text=True, timeout=60
    )


def test_rollback_makes_and_publishes_a_copy_and_refuses_what_was_never_live(
    make_forge: Callable[..., ForgeProcess],
) -> None:
    forge = make_forge(start=False)
    forge.cli("publish", SET, "--version", "2", "--environment", "production", "--as", "editor")

    never = run(forge, "rollback", SET, "--to", "2", "--environment", "staging", "--as", "editor")
    assert never.returncode == 1
    assert never.stderr.strip() == (
        "anvil-forge: Version 2 of core was never live in staging; a rollback goes back only to a version that "
        "was. Publish a newer version instead."
    )
    reviewer = run(forge, "rollback", SET, "--to", "1", "--environment", "production", "--as", "reviewer")
    assert reviewer.returncode == 1 and "reviewer" in reviewer.stderr

    done = run(forge, "rollback", SET, "--to", "1", "--environment", "production", "--as", "editor")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        "Rolled acme/support-bot/core in production back to version 1's content, approved as version 1 by reviewer: "
        "made version 3 and published it (release "
    )
    audit = forge.cli("manage", "shell", "-c", AUDIT_TAIL)
    assert [line for line in audit.split() if line.count(":") == 3] == [
        "version.rollback:editor:3:1",
        "release.publish:editor:3:2",
    ]

    again = run(forge, "rollback", SET, "--to", "1", "--environment", "production", "--as", "editor")
    assert again.returncode == 1 and "what production runs now" in again.stderr


AUDIT_TAIL = """
from anvil_forge.audit.models import AuditEvent
events = AuditEvent.objects.filter(action__in=["version.rollback", "release.publish"]).order_by("-id")[:2]
for e in reversed(list(events)):
    print(f"{e.action}:{e.actor_label}:{e.data['version']}:{e.data.get('rollback_of', e.data.get('previous_version'))}")
"""

"""``ANVIL_LOG_LEVEL`` is read in any case, and an unknown level is refused with a clear message (issue 18)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run_settings(level: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ANVIL_"))}
    env.update({"ANVIL_LOG_LEVEL": level, "DEBUG": "true", "ANVIL_DATA_DIR": "/tmp/anvil-log-level-test"})
    code = "import anvil_forge.settings as s; print(s.LOGGING['loggers']['anvil_forge']['level'])"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("given", "level"), [("warning", "WARNING"), ("Debug", "DEBUG"), (" ERROR ", "ERROR"), ("", "INFO")]
)
def test_a_log_level_in_any_case_is_accepted(given, level):
    result = run_settings(given)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == level


def test_an_unknown_log_level_is_refused_naming_the_known_ones():
    result = run_settings("loud")
    assert result.returncode != 0
    assert (
        "ANVIL_LOG_LEVEL='loud' is not a log level: use one of debug, info, warning, error, critical" in result.stderr
    )

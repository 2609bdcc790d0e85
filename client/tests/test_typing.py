"""mypy --strict is clean on the client runtime (the modules hosts import)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")

PACKAGE = Path(__file__).resolve().parent.parent / "anvil_client"
RUNTIME = [
    "__init__.py", "_cache.py", "_client.py", "_config.py", "_exceptions.py", "_http.py", "_render.py",
    "_limits.py", "_snapshot.py", "_state.py", "_sync.py", "bundle.py", "templates.py", "_releases.py", "_trace.py",
    "_signals.py",
]


def test_runtime_modules_pass_mypy_strict(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--python-version", "3.11", "--follow-imports=silent",
         "--cache-dir", str(tmp_path), *(str(PACKAGE / name) for name in RUNTIME)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr

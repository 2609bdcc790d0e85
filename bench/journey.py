"""The Context Engineer's journey in a real browser: ``bench/results/journey.json``.

Runs the browser tests that measure it (Playwright on Debian's Chromium, a real FORGE, LIVE clients in their own
processes) and keeps their figures. Each test adds its own keys with :func:`record_results`, so the file holds
the figures of every journey measurement (``ack_seconds_p50``, ``ack_seconds_max`` from
``tests/browser/test_live_pages.py``; the action counts from the journey tests).

    python -m bench journey
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "journey.json"
TESTS = ("tests/browser/test_live_pages.py", "tests/browser/test_action_budget.py")


def record_results(figures: dict[str, Any], path: Path = RESULTS) -> None:
    """Merge ``figures`` into the results file (other keys are kept), written atomically, with the run's
    machine, commit and load (``meta``)."""
    from bench.common import run_metadata

    try:
        current = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        current = {}
    current.update(figures)
    current["meta"] = run_metadata()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)


def main() -> int:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *TESTS], cwd=ROOT, check=False
    )
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())

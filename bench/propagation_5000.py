"""Propagation at 5,000 concurrent streams: ``bench.propagation``'s measurement, one more step.

Runs the distribution benchmark's own ``measure`` (same FORGE set-up, publisher, client workers and
latency definition) for 5,000 streams alone, in its own bounded process, and adds the step to
``bench/results/propagation.json`` under ``streams["5000"]`` (the 100 and 1,000 steps written just before
by ``bench.propagation`` are kept). Separate so that a slow 5,000-stream step, which needs minutes of
connection accepts on a loaded machine, can never cost the figures of the smaller steps.
"""

from __future__ import annotations

import sys

from bench.common import log, read_result, write_result
from bench.propagation import measure

STREAMS = 5_000
ROUNDS = 3
WORKERS = 4


def main() -> int:
    results = measure([STREAMS], ROUNDS, WORKERS)
    step = results["streams"].get(str(STREAMS))
    if step is None:
        log("propagation_5000: no result for the 5,000-stream step")
        return 1
    step["rounds"] = ROUNDS
    step["method"] = results.get("method")
    existing = read_result("propagation") or {}
    streams = dict(existing.get("streams") or {})
    streams[str(STREAMS)] = step
    path = write_result("propagation", {"streams": streams}, merge=True, meta_key="meta_5000")
    log(f"propagation_5000: {step}")
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Propagation at 5,000 or 10,000 concurrent streams: ``bench.propagation``'s measurement, one more step.

``python -m bench.propagation_large 5000`` (or ``10000``) runs the distribution benchmark's own ``measure``
(same FORGE set-up, publisher, client workers and latency definition) for that many streams alone, in its own
bounded process, and adds the step to ``bench/results/propagation.json`` under ``streams["<N>"]`` (the other
steps written before are kept). Separate so that a slow large step, which needs minutes of connection accepts
on a loaded machine, can never cost the figures of the smaller steps. The goal at 10,000 streams (issue 15):
p99 at most 250 ms.
"""

from __future__ import annotations

import sys

from bench.common import log, read_result, write_result
from bench.propagation import measure

ROUNDS = 3
WORKERS = 4


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        log("usage: python -m bench.propagation_large STREAMS (5000 or 10000)")
        return 2
    streams = int(argv[0])
    results = measure([streams], ROUNDS, WORKERS)
    step = results["streams"].get(str(streams))
    if step is None:
        log(f"propagation_large: no result for the {streams}-stream step")
        return 1
    step["rounds"] = ROUNDS
    step["method"] = results.get("method")
    existing = read_result("propagation") or {}
    every_step = dict(existing.get("streams") or {})
    every_step[str(streams)] = step
    path = write_result("propagation", {"streams": every_step}, merge=True, meta_key=f"meta_{streams}")
    log(f"propagation_large: {step}")
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

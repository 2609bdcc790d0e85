"""``python -m bench`` (``make bench``): run every benchmark, each in its own bounded process.

Each benchmark is a module ``bench.<name>`` that writes ``bench/results/<name>.json``. They run one
after another (the machine has 2 cores: two benchmarks at once would measure each other), each
under a wall-clock limit; a benchmark that overruns is killed with its whole process group and
reported, and the others still run. The limits add up to about forty minutes. At the end the tables
in ``docs/benchmarks.md`` are regenerated from the results (``bench.report``).

    python -m bench                  # everything
    python -m bench hot_path startup # some
    python -m bench --list
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    DEADLINE_ENV,
    ROOT,
    RUN_ID_ENV,
    drop_run_databases,
    drop_template,
    log,
    prepare_templates,
    write_result,
)


@dataclass(frozen=True)
class Benchmark:
    name: str
    module: str
    timeout_s: int
    what: str
    args: tuple[str, ...] = ()


# In order; the limits sum to about forty minutes for a heavily loaded machine; a quiet 2-core run takes about
# eleven (10 min 41 s on 2026-12-07).
BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("hot_path", "bench.hot_path", 60, "prompt() against dict+format_map and raw Jinja2"),
    Benchmark("hot_path_langfuse", "bench.hot_path_langfuse", 45, "Langfuse cached get_prompt().compile() column"),
    Benchmark("startup", "bench.startup", 60, "fresh process, first prompt from a 1,000-prompt cache, FORGE down"),
    Benchmark("content_scale", "bench.content_scale", 90, "bundles of 10, 1,000, 10,000 prompts"),
    Benchmark(
        "api",
        "bench.api",
        170,
        "LIVE API req/s (bundle 304/200, releases) vs a trivial Starlette app, page latency; SQLite and PostgreSQL",
    ),
    Benchmark("propagation", "bench.propagation", 120, "publish-to-client latency over 100 and 1,000 streams"),
    Benchmark("propagation_5000", "bench.propagation_large", 150, "the same at 5,000 streams", ("5000",)),
    Benchmark("propagation_10000", "bench.propagation_large", 240, "the same at 10,000 streams", ("10000",)),
    Benchmark(
        "propagation_clients",
        "bench.propagation_clients",
        90,
        "publish-to-new-text latency in real anvil_client processes",
    ),
    Benchmark(
        "propagation_users",
        "bench.propagation_users",
        180,
        "from the web confirm or the anvil-forge publish command to every client's new text, SQLite and PostgreSQL",
    ),
    Benchmark("idle_streams", "bench.idle_streams", 170, "RSS and heartbeats at 1,000 and 10,000 idle streams"),
    Benchmark("journey", "bench.journey", 180, "browser: confirm click until the page shows every acknowledgement"),
    Benchmark("fleet", "bench.fleet", 260, "check-in floods, stream churn and shutdown with open streams"),
    Benchmark("rollout", "bench.rollout", 150, "canary halt: first failing render to the canary's previous text again"),
    Benchmark(
        "pages",
        "bench.pages",
        420,
        "main pages' p50 and size at 10,000 instances, 1,000 versions, 100,000 audit events; SQLite and PostgreSQL",
    ),
)


def run_one(benchmark: Benchmark, env: dict[str, str], postgres_url: str | None) -> dict[str, object]:
    if importlib.util.find_spec(benchmark.module) is None:
        log(f"{benchmark.name}: missing ({benchmark.module} does not exist)")
        return {"status": "missing", "seconds": 0}
    log(f"{benchmark.name}: {benchmark.what} (limit {benchmark.timeout_s} s)")
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", benchmark.module, *benchmark.args],
        cwd=ROOT,
        start_new_session=True,  # its own process group: a timeout kills the FORGE and clients it started
        env={
            **os.environ,
            **env,
            "PYTHONUNBUFFERED": "1",
            # Benchmarks size their connect and repeat budgets to finish before the limit.
            DEADLINE_ENV: str(time.time() + benchmark.timeout_s),
        },
    )
    try:
        code = process.wait(timeout=benchmark.timeout_s)
        status = "ok" if code == 0 else f"failed (exit {code})"
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        status = f"timeout after {benchmark.timeout_s} s"
    seconds = round(time.monotonic() - started, 1)
    log(f"{benchmark.name}: {status} in {seconds} s")
    left_behind = drop_run_databases(postgres_url, env[RUN_ID_ENV])
    if left_behind:
        log(f"{benchmark.name}: dropped the databases it left behind: {', '.join(left_behind)}")
    return {"status": status, "seconds": seconds, "timeout_s": benchmark.timeout_s, "args": list(benchmark.args)}


def main(argv: list[str] | None = None) -> int:
    names = [b.name for b in BENCHMARKS]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", metavar="NAME", help=f"run only these: {', '.join(names)}")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and their limits")
    parser.add_argument("--no-report", action="store_true", help="do not regenerate docs/benchmarks.md tables")
    args = parser.parse_args(argv)
    if args.list:
        for b in BENCHMARKS:
            print(f"{b.name:18} {b.timeout_s:4d} s  {b.what}")
        return 0
    unknown = sorted(set(args.only) - set(names))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(names)}")
    chosen = [b for b in BENCHMARKS if not args.only or b.name in args.only]
    from bench.api import DEFAULT_PG, postgres_available

    pg = os.environ.get("ANVIL_BENCH_DATABASE_URL", DEFAULT_PG)
    pg = pg if postgres_available(pg) else None
    with tempfile.TemporaryDirectory(prefix="anvil-bench-templates-") as tmp:
        started = time.monotonic()
        templates = prepare_templates(Path(tmp), pg)
        templates[RUN_ID_ENV] = uuid.uuid4().hex[:6]
        log(f"migrated and seeded the demo databases once for the run in {time.monotonic() - started:.1f} s")
        try:
            outcomes = {b.name: run_one(b, templates, pg) for b in chosen}
        finally:
            drop_template(templates)
    write_result("summary", {"benchmarks": outcomes}, merge=True)
    if not args.no_report and importlib.util.find_spec("bench.report") is not None:
        from bench import report

        report.main([])
    failed = [name for name, outcome in outcomes.items() if outcome["status"] != "ok"]
    for name in failed:
        log(f"not ok: {name}: {outcomes[name]['status']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

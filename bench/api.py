"""FORGE API throughput: requests per second for a bundle GET, conditional (304) and full (200),
on SQLite and on PostgreSQL, under a bounded closed-loop load generator on loopback.

One FORGE process (``anvil-forge serve``: one uvicorn worker, as the embedded default runs) with the
demo data and a ``live`` token. The load generator (:mod:`bench.loadgen`, raw asyncio sockets with
keep-alive) runs in this process, so the FORGE has one core and the generator the other. Per database:

* ``healthz``: ``GET /healthz`` (Django's full middleware stack and one ``SELECT 1``): the same-run
  baseline every ratio is taken against;
* ``bundle_304``: ``GET /api/v1/live/bundles/core`` with ``If-None-Match`` set to the current ETag;
* ``bundle_200``: the same without ``If-None-Match`` (the whole bundle).

PostgreSQL is used when it answers at ``ANVIL_BENCH_DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/anvil_bench``; a fresh database per run, dropped after).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from typing import Any

from bench import loadgen
from bench.common import cpu_seconds, finish_profile, log, running_forge, start_profile, write_result
from bench.idle_streams import create_token

CONNECTIONS = 16
DURATION_S = 5.0
WARMUP_S = 1.0
MAX_REQUESTS = 60_000
PROFILE_S = 4.0
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/anvil_bench"
FORGE_ENV = {"ANVIL_LOG_LEVEL": "WARNING"}


def postgres_available(url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", connect_timeout=3):
            return True
    except Exception:
        return False


def current_etag(forge: Any, token: str) -> tuple[str, int]:
    request = urllib.request.Request(
        forge.url + "/api/v1/live/bundles/core", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
        etag = response.headers.get("ETag")
    if not etag:
        raise RuntimeError("the bundle answer has no ETag header")
    return etag, len(body)


def measure_database(label: str, postgres_url: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with running_forge(env=FORGE_ENV, postgres_url=postgres_url) as forge:
        pid = forge.process.pid
        token = create_token(forge)
        etag, size = current_etag(forge, token)
        auth = {"Authorization": f"Bearer {token}"}
        cases = {
            "healthz": ("/healthz", {}),
            "bundle_304": ("/api/v1/live/bundles/core", {**auth, "If-None-Match": etag}),
            "bundle_200": ("/api/v1/live/bundles/core", auth),
        }
        for name, (path, headers) in cases.items():
            cpu_before = cpu_seconds(pid)
            outcome = loadgen.run(
                "127.0.0.1",
                forge.port,
                path,
                headers=headers,
                connections=CONNECTIONS,
                duration_s=DURATION_S,
                warmup_s=WARMUP_S,
                max_requests=MAX_REQUESTS,
            ).as_dict()
            cpu_used = cpu_seconds(pid) - cpu_before
            outcome["forge_cpu_ms_per_request"] = (
                round(cpu_used * 1000 / outcome["requests"], 3) if outcome["requests"] else None
            )
            outcome["path"] = path
            results[name] = outcome
            log(
                f"api[{label}] {name}: {outcome['rps']} req/s, p50 {outcome['latency_ms']['median']} ms, "
                f"p99 {outcome['latency_ms']['p99']} ms, statuses {outcome['statuses']}"
            )
        results["bundle_bytes"] = size
        # Where the FORGE's time goes on the conditional GET: a separate, sampled run (py-spy, 100 Hz).
        profiler = start_profile(pid, PROFILE_S, f"api_{label}_bundle_304")
        if profiler is not None:
            path, headers = cases["bundle_304"]
            loadgen.run("127.0.0.1", forge.port, path, headers=headers, connections=CONNECTIONS,
                        duration_s=PROFILE_S, warmup_s=0.2, max_requests=MAX_REQUESTS)
            results["profile_bundle_304"] = finish_profile(profiler, f"api_{label}_bundle_304")
    base = results["healthz"]["rps"] or 0
    for name in ("bundle_304", "bundle_200"):
        rps = results[name]["rps"]
        results[name]["ratio_vs_healthz"] = round(rps / base, 2) if base and rps else None
    if results["bundle_304"]["rps"] and results["bundle_200"]["rps"]:
        results["ratio_304_vs_200"] = round(results["bundle_304"]["rps"] / results["bundle_200"]["rps"], 2)
    return results


def main() -> int:
    databases: dict[str, Any] = {}
    databases["sqlite"] = measure_database("sqlite", None)
    pg = os.environ.get("ANVIL_BENCH_DATABASE_URL", DEFAULT_PG)
    if postgres_available(pg):
        databases["postgresql"] = measure_database("postgresql", pg)
    else:
        log(f"api: PostgreSQL does not answer at {pg}; SQLite only")
        databases["postgresql"] = {"skipped": f"PostgreSQL did not answer at {pg}"}
    figures = {
        "method": f"closed loop, {CONNECTIONS} keep-alive connections, {DURATION_S} s after {WARMUP_S} s warm-up, "
        f"at most {MAX_REQUESTS} requests; one uvicorn worker; generator in another process on the other core",
        "databases": databases,
    }
    path = write_result("api", figures)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

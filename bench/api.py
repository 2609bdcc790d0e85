"""FORGE API throughput against a trivial Starlette app measured in the same run, and page latency.

One FORGE process (``anvil-forge serve``: one uvicorn worker, as the embedded default runs) with the
demo data and a ``live`` token, pinned to one core; the load generator (:mod:`bench.loadgen`, raw asyncio
sockets with keep-alive) runs in this process, pinned to the other. Per database:

* ``starlette``: a trivial Starlette app (one route answering a small JSON) under the same uvicorn settings
  and pinning, measured before and after the FORGE: the ceiling every ``ratios_vs_starlette`` figure is taken
  against (the mean of the two runs, so drift over the run does not favour either side);
* ``healthz``: ``GET /healthz`` (Django's full middleware stack and one ``SELECT 1``);
* ``bundle_304``: ``GET /api/v1/live/bundles/core`` with ``If-None-Match`` set to the current ETag;
* ``bundle_200``: the same without ``If-None-Match`` (the whole bundle);
* ``releases``: ``GET /api/v1/live/releases``;
* ``connections``: a request-like thread (Django's first query in a fresh thread, then ``close()`` as at a
  request's end) with a new connection each time and with the FORGE's connection pool, interleaved;
* ``pages``: the median and p90 latency of the demo's main pages (the organisation's projects, the project,
  the set, its versions, the audit log, the instances) for a signed-in user, one request at a time.

Results: ``bench/results/api.json``, with ``ratios_vs_starlette`` -> ``sqlite`` / ``postgresql`` ->
``bundle_304``, ``bundle_200``, ``releases`` (issue 15's goals: 0.3, 0.25 and 0.2).

    .venv/bin/python -m bench.api

PostgreSQL is used when it answers at ``ANVIL_BENCH_DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/anvil_bench``; a fresh database per run, dropped after).
"""

from __future__ import annotations

import contextlib
import http.client
import http.cookiejar
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from bench import loadgen
from bench.common import (
    ROOT,
    cpu_seconds,
    finish_profile,
    free_port,
    log,
    running_forge,
    start_profile,
    summarize,
    write_result,
)
from bench.idle_streams import create_token

CONNECTIONS = 16
DURATION_S = 5.0
WARMUP_S = 1.0
MAX_REQUESTS = 60_000
PROFILE_S = 4.0
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/anvil_bench"
FORGE_ENV = {"ANVIL_LOG_LEVEL": "WARNING"}
SERVER_CORE = 0
GENERATOR_CORE = 1
PAGE_REQUESTS = 25
DEMO_PASSWORD = "anvil-demo"
PAGES = {
    "projects": "/o/acme/",
    "project": "/o/acme/p/support-bot/",
    "set": "/o/acme/p/support-bot/s/core/",
    "versions": "/o/acme/p/support-bot/s/core/versions/",
    "audit": "/o/acme/audit/",
    "instances": "/o/acme/instances/",
}
ENDPOINTS = ("bundle_304", "bundle_200", "releases")


def _baseline() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def ok(request: Any) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/", ok)])


def pin(pid: int, core: int) -> None:
    """Pin ``pid`` to ``core`` when the machine has it (2 cores: the server on one, the generator on the other)."""
    if hasattr(os, "sched_setaffinity") and core < (os.cpu_count() or 1):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {core})


@contextlib.contextmanager
def running_baseline() -> Iterator[tuple[int, int]]:
    """The trivial Starlette app under uvicorn with ``anvil-forge serve``'s settings, on a free port."""
    port = free_port()
    code = (
        f"import uvicorn; uvicorn.run('bench.api:baseline', host='127.0.0.1', port={port}, proxy_headers=True, "
        "timeout_graceful_shutdown=3, log_level='warning', access_log=False)"
    )
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the Starlette baseline did not start") from None
                time.sleep(0.1)
        pin(process.pid, SERVER_CORE)
        yield port, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure_baseline(label: str) -> dict[str, Any]:
    with running_baseline() as (port, pid):
        cpu_before = cpu_seconds(pid)
        outcome = loadgen.run(
            "127.0.0.1", port, "/", connections=CONNECTIONS, duration_s=DURATION_S, warmup_s=WARMUP_S,
            max_requests=MAX_REQUESTS,
        ).as_dict()
        cpu_used = cpu_seconds(pid) - cpu_before
    outcome["server_cpu_ms_per_request"] = (
        round(cpu_used * 1000 / outcome["requests"], 4) if outcome["requests"] else None
    )
    log(f"api[{label}] starlette baseline: {outcome['rps']} req/s, p50 {outcome['latency_ms']['median']} ms")
    return outcome


def connection_main() -> int:
    """Child process with a FORGE's settings: a request-like thread (first query, then close) with and without
    the connection pool, interleaved; prints the medians in ms."""
    import statistics
    import threading

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anvil_forge.settings")
    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection

    from anvil_forge.core import dbpool

    users = get_user_model().objects

    def request() -> None:
        users.filter(username="editor").first()
        connection.close()  # what Django does when the request ends (CONN_MAX_AGE = 0)

    def in_thread() -> None:
        thread = threading.Thread(target=request)
        thread.start()
        thread.join()

    samples: dict[str, list[float]] = {"fresh_thread_new_connection_ms": [], "fresh_thread_pooled_connection_ms": []}
    size = dbpool.pool.size or 8
    for _ in range(5):
        for name, pool_size in zip(samples, (0, size), strict=True):
            dbpool.pool.size = pool_size
            dbpool.pool.drain()
            for _ in range(10):
                in_thread()
            began = time.perf_counter()
            for _ in range(100):
                in_thread()
            samples[name].append((time.perf_counter() - began) * 10)
    sys.stdout.write(json.dumps({name: round(statistics.median(values), 3) for name, values in samples.items()}))
    return 0


def measure_connections(forge: Any) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.api", "connection"], cwd=ROOT, env={**forge.env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )
    if result.returncode != 0:
        return {"error": result.stderr[-500:]}
    return json.loads(result.stdout)


def signed_in_cookie(url: str, username: str = "editor") -> str:
    """The ``Cookie`` header of a session signed in through the login form."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(url + "/login/", timeout=10).read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if csrf is None:
        raise RuntimeError("no CSRF token on the login page")
    form = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": csrf.group(1), "username": username, "password": DEMO_PASSWORD}
    ).encode()
    opener.open(urllib.request.Request(url + "/login/", data=form, headers={"Referer": url + "/login/"}), timeout=10)
    cookies = {cookie.name: cookie.value for cookie in jar}
    if "sessionid" not in cookies:
        raise RuntimeError("signing in as the demo editor failed")
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def measure_pages(forge: Any) -> dict[str, Any]:
    """Median and p90 latency of each main page, one request at a time on a kept connection."""
    cookie = signed_in_cookie(forge.url)
    connection = http.client.HTTPConnection("127.0.0.1", forge.port, timeout=30)
    pages: dict[str, Any] = {}
    try:
        for name, path in PAGES.items():
            samples = []
            for index in range(PAGE_REQUESTS + 3):
                began = time.perf_counter()
                connection.request("GET", path, headers={"Cookie": cookie})
                response = connection.getresponse()
                response.read()
                elapsed = (time.perf_counter() - began) * 1000
                if response.status != 200:
                    raise RuntimeError(f"{path} answered {response.status}")
                if index >= 3:  # the first requests fill Django's and the templates' caches
                    samples.append(elapsed)
            pages[name] = {"path": path, **summarize(samples, digits=2)}
    finally:
        connection.close()
    medians = sorted(page["median"] for page in pages.values())
    return {"pages": pages, "p50_ms_of_medians": medians[len(medians) // 2]}


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
    results: dict[str, Any] = {"starlette_before": measure_baseline(label)}
    with running_forge(env=FORGE_ENV, postgres_url=postgres_url) as forge:
        pid = forge.process.pid
        pin(pid, SERVER_CORE)
        token = create_token(forge)
        etag, size = current_etag(forge, token)
        auth = {"Authorization": f"Bearer {token}"}
        cases = {
            "healthz": ("/healthz", {}),
            "bundle_304": ("/api/v1/live/bundles/core", {**auth, "If-None-Match": etag}),
            "bundle_200": ("/api/v1/live/bundles/core", auth),
            "releases": ("/api/v1/live/releases", auth),
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
        results["pages"] = measure_pages(forge)
        results["connections"] = measure_connections(forge)
        log(f"api[{label}] a request-like thread's first query and close: {results['connections']}")
        log(f"api[{label}] pages: p50 {results['pages']['p50_ms_of_medians']} ms (median of the pages' medians)")
        # Where the FORGE's time goes on the conditional GET: a separate, sampled run (py-spy, 100 Hz).
        profiler = start_profile(pid, PROFILE_S, f"api_{label}_bundle_304")
        if profiler is not None:
            path, headers = cases["bundle_304"]
            loadgen.run("127.0.0.1", forge.port, path, headers=headers, connections=CONNECTIONS,
                        duration_s=PROFILE_S, warmup_s=0.2, max_requests=MAX_REQUESTS)
            results["profile_bundle_304"] = finish_profile(profiler, f"api_{label}_bundle_304")
    results["starlette_after"] = measure_baseline(label)
    base = results["healthz"]["rps"] or 0
    for name in ("bundle_304", "bundle_200"):
        rps = results[name]["rps"]
        results[name]["ratio_vs_healthz"] = round(rps / base, 2) if base and rps else None
    ceiling = [results[key]["rps"] for key in ("starlette_before", "starlette_after") if results[key]["rps"]]
    results["starlette_rps"] = round(sum(ceiling) / len(ceiling), 1) if ceiling else None
    results["ratios_vs_starlette"] = {
        name: round(results[name]["rps"] / results["starlette_rps"], 3)
        if results["starlette_rps"] and results[name]["rps"] and set(results[name]["statuses"]) <= {"200", "304"}
        else None
        for name in ("healthz", *ENDPOINTS)
    }
    # The same ratio by the server's CPU time per request (Starlette's / the endpoint's): steadier than req/s on
    # a busy machine, where the load generator competes for its core too.
    base_cpu = [results[key].get("server_cpu_ms_per_request") for key in ("starlette_before", "starlette_after")]
    base_cpu = [value for value in base_cpu if value]
    results["cpu_ratios_vs_starlette"] = {
        name: round((sum(base_cpu) / len(base_cpu)) / results[name]["forge_cpu_ms_per_request"], 3)
        if base_cpu and results[name].get("forge_cpu_ms_per_request")
        else None
        for name in ("healthz", *ENDPOINTS)
    }
    if results["bundle_304"]["rps"] and results["bundle_200"]["rps"]:
        results["ratio_304_vs_200"] = round(results["bundle_304"]["rps"] / results["bundle_200"]["rps"], 2)
    return results


def main() -> int:
    pin(os.getpid(), GENERATOR_CORE)
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
        f"at most {MAX_REQUESTS} requests; one uvicorn worker pinned to core {SERVER_CORE}, the generator to core "
        f"{GENERATOR_CORE}; ratios against a trivial Starlette app on the same uvicorn settings, measured before "
        "and after each database's FORGE; pages: one signed-in client, one request at a time",
        "goals": {"bundle_304": 0.3, "bundle_200": 0.25, "releases": 0.2},
        "ratios_vs_starlette": {
            label: {name: result.get("ratios_vs_starlette", {}).get(name) for name in ENDPOINTS}
            for label, result in databases.items()
            if "skipped" not in result
        },
        "cpu_ratios_vs_starlette": {
            label: {name: result.get("cpu_ratios_vs_starlette", {}).get(name) for name in ENDPOINTS}
            for label, result in databases.items()
            if "skipped" not in result
        },
        "page_p50_ms": {
            label: result["pages"]["p50_ms_of_medians"] for label, result in databases.items() if "pages" in result
        },
        "databases": databases,
    }
    path = write_result("api", figures)
    log(f"wrote {path}")
    return 0


baseline = _baseline()


if __name__ == "__main__":
    if sys.argv[1:] == ["connection"]:
        sys.exit(connection_main())
    sys.exit(main())

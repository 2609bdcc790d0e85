"""Start-up: a fresh process imports ``anvil_client`` and serves its first prompt from a 1,000-prompt
disk cache while the FORGE is down.

The cache holds one set of 1,000 prompts (``bench.content_scale`` prompts, written by the client's own
disk-cache writer). The FORGE URL points at a loopback port where nothing listens, so the client's
attempt to reach it is refused at once, the way a FORGE that is down but whose host answers behaves.

Each run is a new interpreter (``python -c``) that wraps the socket calls that open connections or
resolve names before importing ``anvil_client``, then calls ``anvil_client.prompt(...)`` through the
module-level default client configured from the environment. Measured per run:

* ``launch_to_first_prompt_ms``: from the parent's ``Popen`` to the child's first prompt (includes
  the interpreter's own start-up); the headline ``median_ms``;
* ``import_ms`` and ``first_prompt_ms`` inside the child, and ``interpreter_only_ms``: the same
  interpreter doing nothing (the same-run baseline);
* ``network_calls``: connection attempts and name look-ups made before the first prompt returned
  (on any thread), and ``network_calls_after``: those within 0.3 s after it (the background sync).

A second, shorter series (``forge_hangs``) points the client at a port that accepts connections and
never answers, the FORGE that is down without refusing: the first use then waits for the FORGE up to the
client's bounded start-up timeout.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from anvil_client.bundle import load_bundle
from bench.common import cprofile_summary, free_port, log, seconds_left, summarize, write_result
from bench.content_scale import make_bundle_bytes

RUNS = 21
MIN_RUNS = 3
HANGING_RUNS = 3
RUNS_BUDGET_S = 25.0  # stop early (after MIN_RUNS) when start-up is slow, so the benchmark stays bounded
PROMPTS = 1_000
FIRST_PROMPT_ID = "area004.topic00400.message"

_CHILD = r"""
import time
t0 = time.perf_counter()
import socket, sys, threading, json, os
calls = []
_lock = threading.Lock()
def _record(kind, target):
    with _lock:
        calls.append((time.perf_counter(), kind, str(target), threading.current_thread().name))
_connect, _connect_ex, _gai = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo
def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _record("connect", address)
    return _connect(self, address)
def connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _record("connect_ex", address)
    return _connect_ex(self, address)
def getaddrinfo(*args, **kwargs):
    _record("getaddrinfo", args[:2])
    return _gai(*args, **kwargs)
socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
t1 = time.perf_counter()
import anvil_client
t2 = time.perf_counter()
text = anvil_client.prompt(sys.argv[1], company="Acme", name="Ada", plan="pro")
t3 = time.perf_counter()
sys.stdout.write(json.dumps({"first": True, "chars": len(text)}) + "\n")
sys.stdout.flush()
time.sleep(0.3)
with _lock:
    before = [c for c in calls if c[0] <= t3]
    after = [c for c in calls if c[0] > t3]
status = {}
try:
    status = {k: v for k, v in anvil_client.status().items() if k in ("mode", "source", "versions", "connected")}
except Exception as exc:
    status = {"error": repr(exc)}
sys.stdout.write(json.dumps({
    "import_ms": (t2 - t1) * 1000, "first_prompt_ms": (t3 - t2) * 1000, "patch_ms": (t1 - t0) * 1000,
    "calls_before": [c[1:] for c in before], "calls_after": [c[1:] for c in after], "status": status,
}, default=str) + "\n")
sys.stdout.flush()
os._exit(0)
"""


def write_cache(cache_dir: Path) -> None:
    bundle = load_bundle(make_bundle_bytes(PROMPTS))
    try:
        from anvil_client._cache import write_disk_bundle
    except ImportError:
        (cache_dir / "bundles").mkdir(parents=True, exist_ok=True)
        (cache_dir / "bundles" / f"{bundle.set}.json").write_bytes(make_bundle_bytes(PROMPTS))
        return
    if not write_disk_bundle(cache_dir, bundle):
        raise RuntimeError(f"the client could not write its disk cache in {cache_dir}")


def child_env(cache_dir: Path, dead_port: int) -> dict[str, str]:
    # Any value of PYTHONDONTWRITEBYTECODE (even "0") stops .pyc writes, and every start would then
    # compile the client's edited modules from source: measure start-up with bytecode, as deployed.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("ANVIL_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        {
            "ANVIL_FORGE_URL": f"http://127.0.0.1:{dead_port}",
            "ANVIL_TOKEN": "anvil_live_" + "b" * 43,
            "ANVIL_CACHE_DIR": str(cache_dir),
        }
    )
    return env


def run_child(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", _CHILD, FIRST_PROMPT_ID],
        env=env,
        cwd=cwd,  # outside the repository, so no anvil.toml is found by accident
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first_line = process.stdout.readline()
    first_at = time.perf_counter()
    try:
        rest, stderr = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        rest, stderr = process.communicate()
    if not first_line or process.returncode != 0:
        raise RuntimeError(f"the start-up child failed ({process.returncode}):\n{stderr[-3000:]}")
    report = json.loads(rest.strip().splitlines()[-1])
    report["launch_to_first_prompt_ms"] = (first_at - started) * 1000
    return report


def profile_first_prompt(cache_dir: Path, dead_port: int) -> dict[str, Any]:
    """Where the first prompt's time goes: cProfile of a client starting on the same cache (in this process)."""
    import anvil_client

    client = anvil_client.Client(
        forge_url=f"http://127.0.0.1:{dead_port}", token="anvil_live_" + "b" * 43, cache_dir=cache_dir
    )
    try:
        return cprofile_summary(lambda: client.prompt(FIRST_PROMPT_ID, company="Acme", name="Ada", plan="pro"))
    finally:
        client.close()


class SilentForge:
    """A loopback port that accepts connections and never answers: a FORGE that hangs (or a black hole)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, name="bench.silent-forge", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                connection, _ = self.sock.accept()
            except OSError:
                continue
            self.held.append(connection)  # kept open, never read, never answered

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=2)
        for connection in self.held:
            connection.close()
        self.sock.close()


def interpreter_only_ms(env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, cwd=cwd, check=True)
    return (time.perf_counter() - started) * 1000


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="anvil-bench-startup-") as tmp:
        root = Path(tmp)
        cache_dir = root / "cache"
        write_cache(cache_dir)
        dead_port = free_port()  # nothing listens there: the FORGE is down
        env = child_env(cache_dir, dead_port)
        log(f"startup: {RUNS} fresh processes, {PROMPTS}-prompt disk cache, FORGE down (port {dead_port})")
        baseline = [interpreter_only_ms(env, root) for _ in range(5)]
        runs: list[dict[str, Any]] = []
        # Leave time for the profile and the hanging-FORGE runs (each waits the client's start-up timeout).
        budget_end = time.monotonic() + min(RUNS_BUDGET_S, seconds_left() - 30)
        slowest = 0.0
        while len(runs) < RUNS and (len(runs) < MIN_RUNS or time.monotonic() + slowest < budget_end):
            began = time.monotonic()
            runs.append(run_child(env, root))
            slowest = max(slowest, time.monotonic() - began)
        profile = profile_first_prompt(cache_dir, dead_port)
        silent = SilentForge()
        try:
            log(f"startup: {HANGING_RUNS} more with a FORGE that accepts and never answers (port {silent.port})")
            hanging = [run_child(child_env(cache_dir, silent.port), root) for _ in range(HANGING_RUNS)]
        finally:
            silent.close()
    hanging_launch = [r["launch_to_first_prompt_ms"] for r in hanging]
    launch = [r["launch_to_first_prompt_ms"] for r in runs]
    calls_before = [len(r["calls_before"]) for r in runs]
    calls_after = [len(r["calls_after"]) for r in runs]
    figures = {
        "method": "fresh interpreter per run; launch_to_first_prompt_ms from Popen to the first prompt printed; "
        "network calls counted by wrapping socket connect/connect_ex/getaddrinfo before the import",
        "prompts_in_cache": PROMPTS,
        "runs": len(runs),
        "median_ms": summarize(launch)["median"],
        "p99_ms": summarize(launch)["p99"],
        "network_calls": max(calls_before),
        "network_calls_after": max(calls_after),
        "launch_to_first_prompt_ms": summarize(launch),
        "import_ms": summarize([r["import_ms"] for r in runs]),
        "first_prompt_ms": summarize([r["first_prompt_ms"] for r in runs]),
        "interpreter_only_ms": summarize(baseline),
        "ratio_vs_interpreter_only": round(summarize(launch)["median"] / summarize(baseline)["median"], 2),
        "example_calls_before": runs[-1]["calls_before"],
        "example_calls_after": runs[-1]["calls_after"],
        "client_status": runs[-1]["status"],
        "profile_first_prompt": profile,
        "forge_hangs": {
            "what": "the FORGE URL accepts connections and never answers (a hung FORGE or a black hole)",
            "runs": len(hanging),
            "launch_to_first_prompt_ms": summarize(hanging_launch),
            "first_prompt_ms": summarize([r["first_prompt_ms"] for r in hanging]),
            "client_status": hanging[-1]["status"],
        },
        "target_ms": 100,
    }
    path = write_result("startup", figures)
    log(f"startup: median {figures['median_ms']} ms, network calls before first prompt {figures['network_calls']}")
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What every benchmark shares: run metadata, statistics, result files, and a FORGE to measure.

Each benchmark is a module ``bench/<name>.py`` with a ``main()`` that measures, then calls
:func:`write_result` so ``bench/results/<name>.json`` records, beside its figures, the machine, the
Python and package versions, the git commit, the date and how loaded the machine was while it ran.
Statistics are computed here once (nearest-rank percentiles) so every figure means the same thing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"

# The distributions whose versions decide the figures; missing ones are recorded as null.
PACKAGES = (
    "anvil-client",
    "anvil-forge",
    "Jinja2",
    "MarkupSafe",
    "Django",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "psycopg",
    "httpx",
    "langfuse",
    "pydantic",
)

_STARTED_AT = time.time()
_LOAD_AT_START = os.getloadavg()
RUN_ID_ENV = "ANVIL_BENCH_RUN_ID"


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    # The runner stops an overrunning benchmark with SIGTERM: leave through the context managers, so the
    # FORGE is stopped and its PostgreSQL database dropped, instead of dying where it stands.
    raise SystemExit(128 + signum)


if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def machine() -> dict[str, Any]:
    """The machine the figures were taken on."""
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_total_mb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total_mb = round(int(line.split()[1]) / 1024)
                break
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "mem_total_mb": mem_total_mb,
    }


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> dict[str, Any]:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": head, "dirty": bool(dirty)}


def run_metadata() -> dict[str, Any]:
    """Machine, Python, packages, commit, date, and the load average before and after the run."""
    load_now = os.getloadavg()
    cpus = os.cpu_count() or 1
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "started_at": dt.datetime.fromtimestamp(_STARTED_AT, dt.UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - _STARTED_AT, 1),
        "machine": machine(),
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "packages": package_versions(),
        "git": git_commit(),
        "load": {
            "loadavg_1m_at_start": round(_LOAD_AT_START[0], 2),
            "loadavg_1m_at_end": round(load_now[0], 2),
            # Other work on the machine competes with the benchmark: above ~0.5 per core the figures are pessimistic.
            "loaded": max(_LOAD_AT_START[0], load_now[0]) > 0.5 * cpus,
        },
    }


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sequence."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(samples: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """Median, p90, p99, mean, min, max and count of ``samples``, rounded to ``digits``."""
    if not samples:
        return {"n": 0, "median": None, "p90": None, "p99": None, "mean": None, "min": None, "max": None}
    return {
        "n": len(samples),
        "median": round(statistics.median(samples), digits),
        "p90": round(percentile(samples, 90), digits),
        "p99": round(percentile(samples, 99), digits),
        "mean": round(statistics.fmean(samples), digits),
        "min": round(min(samples), digits),
        "max": round(max(samples), digits),
    }


def time_per_call_ns(call: Callable[[], Any], *, loops: int, repeats: int, warmup: int = 1) -> list[float]:
    """Nanoseconds per call of ``call``, one sample per repeat of ``loops`` calls (after ``warmup`` repeats)."""
    samples: list[float] = []
    perf = time.perf_counter_ns
    for index in range(warmup + repeats):
        start = perf()
        for _ in range(loops):
            call()
        elapsed = perf() - start
        if index >= warmup:
            samples.append(elapsed / loops)
    return samples


def write_result(name: str, figures: dict[str, Any], *, merge: bool = False, meta_key: str = "meta") -> Path:
    """Write ``bench/results/<name>.json``: ``figures`` plus run metadata under ``meta_key``.

    With ``merge``, what the file already holds is kept unless ``figures`` sets it: a script that adds
    columns to a file another script wrote passes its own ``meta_key`` so both runs stay recorded.
    The file is replaced atomically.
    """
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    data: dict[str, Any] = {}
    if merge and path.exists():
        with contextlib.suppress(ValueError):
            data = json.loads(path.read_text())
    data.update(figures)
    data[meta_key] = run_metadata()
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".json", dir=RESULTS_DIR)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)
    return path


def read_result(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit (``ulimit -n``) towards ``wanted``; children inherit it.

    Returns the soft limit now in force (capped by the hard limit, which only root may raise).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            # Root may raise the hard limit too; others live with what they have.
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` in MB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time consumed so far by process ``pid`` (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def query_one(database_url: str, sql: str) -> Any:
    """The first column of the first row of ``sql`` in a FORGE's database (SQLite file or PostgreSQL), read on
    a connection of its own, as an outside observer would."""
    if database_url.startswith("sqlite:///"):
        import sqlite3

        connection = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=10)
        try:
            return connection.execute(sql).fetchone()[0]
        finally:
            connection.close()
    import psycopg

    with psycopg.connect(database_url) as connection:
        return connection.execute(sql).fetchone()[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SQLITE_TEMPLATE_ENV = "ANVIL_BENCH_SQLITE_TEMPLATE"
POSTGRES_TEMPLATE_ENV = "ANVIL_BENCH_POSTGRES_TEMPLATE"
DEADLINE_ENV = "ANVIL_BENCH_DEADLINE"


def seconds_left(default: float = 3600.0) -> float:
    """Seconds until the wall-clock limit ``python -m bench`` gave this benchmark (``default`` when run alone)."""
    try:
        return float(os.environ[DEADLINE_ENV]) - time.time()
    except (KeyError, ValueError):
        return default


def _harness() -> Any:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests import forge_process

    return forge_process


def _pg_admin(url: str, sql: str) -> None:
    import psycopg

    parts = urlsplit(url)
    with psycopg.connect(urlunsplit((parts.scheme, parts.netloc, "/postgres", "", "")), autocommit=True) as conn:
        conn.execute(sql)


def _pg_database_url(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def prepare_templates(workdir: Path, postgres_url: str | None) -> dict[str, str]:
    """Migrate and seed the demo database once for a whole ``python -m bench`` run.

    Returns the environment that tells :func:`running_forge` (in every benchmark process) to copy these
    instead of migrating again: a SQLite file, and a PostgreSQL database used as ``TEMPLATE``.
    """
    harness = _harness()
    saved = os.environ.pop("DATABASE_URL", None)
    env: dict[str, str] = {}
    try:
        sqlite_dir = workdir / "sqlite"
        sqlite_dir.mkdir(parents=True, exist_ok=True)
        harness.new_database(sqlite_dir, seed_demo=True)
        env[SQLITE_TEMPLATE_ENV] = str(sqlite_dir / "forge.sqlite3")
        harness.drop_templates()
        if postgres_url:
            os.environ["DATABASE_URL"] = postgres_url
            pg_dir = workdir / "pg"
            pg_dir.mkdir(parents=True, exist_ok=True)
            env[POSTGRES_TEMPLATE_ENV] = harness.new_database(pg_dir, seed_demo=True)
            harness.drop_templates()
    finally:
        harness.drop_templates()
        if saved is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved
    return env


def drop_run_databases(postgres_url: str | None, run_id: str) -> list[str]:
    """Drop the PostgreSQL databases this run's benchmarks made and could not drop (killed at their limit)."""
    if not postgres_url:
        return []
    import psycopg

    parts = urlsplit(postgres_url)
    admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", "", ""))
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            names = [
                row[0]
                for row in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"anvil\\_bench\\_{run_id}\\_%",)
                )
            ]
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception:
        return []
    return names


def drop_template(env: dict[str, str]) -> None:
    url = env.get(POSTGRES_TEMPLATE_ENV)
    if url:
        name = urlsplit(url).path.lstrip("/")
        with contextlib.suppress(Exception):
            _pg_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _copy_database(data_dir: Path, postgres_url: str | None) -> str | None:
    """A fresh database copied from the run's prepared template, or None when there is none."""
    if postgres_url:
        template = os.environ.get(POSTGRES_TEMPLATE_ENV)
        if not template:
            return None
        name = f"anvil_bench_{os.environ.get(RUN_ID_ENV, 'x')}_{uuid.uuid4().hex[:8]}"
        _pg_admin(postgres_url, f'CREATE DATABASE "{name}" TEMPLATE "{urlsplit(template).path.lstrip("/")}"')
        return _pg_database_url(postgres_url, name)
    template = os.environ.get(SQLITE_TEMPLATE_ENV)
    if not template or not Path(template).exists():
        return None
    shutil.copyfile(template, data_dir / "forge.sqlite3")
    return f"sqlite:///{data_dir / 'forge.sqlite3'}"


@contextlib.contextmanager
def running_forge(
    *, env: dict[str, str] | None = None, postgres_url: str | None = None, seed_demo: bool = True
) -> Iterator[Any]:
    """A FORGE (``anvil-forge serve`` under uvicorn) on a free loopback port, stopped on exit.

    Reuses the test harness (``tests/forge_process.py``): a copy of a migrated, demo-seeded database,
    SQLite under a temp data dir, or a fresh PostgreSQL database (dropped afterwards) when
    ``postgres_url`` is given. Under ``python -m bench`` the migrated database is prepared once for the
    whole run (:func:`prepare_templates`) and copied here.
    """
    forge_process = _harness()
    saved = os.environ.get("DATABASE_URL")
    if postgres_url:
        os.environ["DATABASE_URL"] = postgres_url
    else:
        os.environ.pop("DATABASE_URL", None)
    forge = None
    try:
        with tempfile.TemporaryDirectory(prefix="anvil-bench-") as tmp:
            data_dir = Path(tmp)
            database_url = (_copy_database(data_dir, postgres_url) if seed_demo else None) or (
                forge_process.new_database(data_dir, seed_demo=seed_demo)
            )
            forge = forge_process.ForgeProcess(data_dir=data_dir, database_url=database_url, extra_env=env or {})
            try:
                forge.start(timeout=60)
                yield forge
            finally:
                forge.stop()
                forge.drop_database()
    finally:
        forge_process.drop_templates()
        if saved is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved


PROFILES_DIR = RESULTS_DIR / "profiles"


def pyspy_available() -> str | None:
    """The py-spy executable beside this Python (``requirements/bench.txt``), or None."""
    candidate = Path(sys.executable).with_name("py-spy")
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def start_profile(pid: int, seconds: float, name: str) -> subprocess.Popen[bytes] | None:
    """Sample process ``pid`` with py-spy for ``seconds`` (GIL-holding stacks, 100 Hz, not pausing it).

    Returns the py-spy process (pass it to :func:`finish_profile`), or None when py-spy is missing.
    The collapsed stacks go to ``bench/results/profiles/<name>.txt``.
    """
    executable = pyspy_available()
    if executable is None:
        return None
    PROFILES_DIR.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [executable, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--format", "raw",
         "--gil", "--nonblocking", "--output", str(PROFILES_DIR / f"{name}.txt")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def finish_profile(process: subprocess.Popen[bytes] | None, name: str, *, top: int = 12) -> dict[str, Any] | None:
    """Wait for py-spy and summarise ``profiles/<name>.txt``: the share of samples per function.

    ``inclusive``: functions of Anvil, Django, Jinja2 and the standard library's json/hashlib by the share
    of samples in which they are on the stack; ``self``: the functions the samples were in.
    """
    if process is None:
        return None
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    path = PROFILES_DIR / f"{name}.txt"
    if not path.exists():
        return None
    inclusive: dict[str, int] = {}
    leaf: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame_name(frame) for frame in stack.split(";") if frame]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        if frames:
            leaf[frames[-1]] = leaf.get(frames[-1], 0) + count
    if not total:
        return {"samples": 0, "file": str(path.relative_to(ROOT))}
    interesting = ("anvil_forge", "anvil_client", "django/db", "django/core", "jinja2", "json", "hashlib")
    ranked = sorted(
        ((name, n) for name, n in inclusive.items() if any(key in name for key in interesting)),
        key=lambda item: -item[1],
    )
    return {
        "samples": total,
        "file": str(path.relative_to(ROOT)),
        "inclusive_percent": {name: round(100 * n / total, 1) for name, n in ranked[:top]},
        "self_percent": {
            name: round(100 * n / total, 1) for name, n in sorted(leaf.items(), key=lambda item: -item[1])[:top]
        },
    }


def cprofile_summary(call: Callable[[], Any], *, top: int = 12) -> dict[str, Any]:
    """Run ``call`` once under cProfile; the functions with the largest cumulative share of its time."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        call()
    finally:
        profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = max((entry[3] for entry in stats.values()), default=0.0)  # cumulative time of the outermost call
    ranked = sorted(stats.items(), key=lambda item: -item[1][3])
    cumulative: dict[str, float] = {}
    for (filename, line, function), (_, _, _, cum, _) in ranked:
        name = _frame_name(f"{function} ({filename}:{line})")
        if name in cumulative or not total:
            continue
        cumulative[name] = round(100 * cum / total, 1)
        if len(cumulative) >= top:
            break
    return {"profiled_ms": round(total * 1000, 1), "cumulative_percent": cumulative}


def _frame_name(frame: str) -> str:
    """``function (path/to/file.py:123)`` -> ``function (package/file.py)``, shortened to the package."""
    function, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/forge/", "/work/main/client/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{function} ({path})"


def log(message: str) -> None:
    """Progress on stderr, stamped with the seconds since the benchmark started."""
    print(f"[{time.time() - _STARTED_AT:7.1f}s] {message}", file=sys.stderr, flush=True)

"""Celery's prefork pool and ``multiprocessing.Pool``: every worker serves a new version within 1.5 s of publish.

Both start the module-level client in the parent, as a Django or Flask host does at import, then fork four
workers that are replaced every few tasks (``--max-tasks-per-child``, ``maxtasksperchild``). Tasks are issued
continuously around a publish; each returns the process id, the greeting it rendered and when. The tests check
(issue 20):

- every worker starts, and every task executed later than 1.5 s after the publish command returned serves the
  new version;
- no process ever serves the old version after it served the new one, and a replaced child never serves the
  old version for a task issued after the host already served the new one (it takes what its siblings wrote to
  the disk cache);
- one stream per process and no shared sockets, read from ``/proc``: no TCP connection to the FORGE's port is
  held by two processes, and each process that started its sync holds exactly one long-lived connection to it;
- the processes check in as processes of ONE instance (the FORGE's instances page groups them).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.forge_process import ForgeProcess, free_port
from tests.integration.test_client_live import FAST, V1, V2, live_token, publish

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pre-fork workers, read through /proc"),
]

WORKERS = 4
TASKS_PER_CHILD = 5
CONTRACT = 1.5  # seconds after publish by which every worker serves the new version (issue 20)
AFTER = 3.5  # seconds of tasks after the publish command returned

TASKS = '''
import os, time

import anvil_client
from celery import Celery

# As a Django (AnvilConfig.ready) or Flask (Anvil(app)) host does: the parent starts the client before forking.
anvil_client.configure(heartbeat_interval=1, backoff_initial=0.1, backoff_max=1)
BOOT = anvil_client.prompt("greeting.welcome", customer_name="Ada")

app = Celery("tasks", broker=os.environ["BROKER_URL"], backend=os.environ["BROKER_URL"])
app.conf.update(worker_prefetch_multiplier=1, broker_connection_retry_on_startup=True, result_expires=600)


@app.task(name="tasks.serve")
def serve():
    return (os.getpid(), anvil_client.prompt("greeting.welcome", customer_name="Ada"), time.time())
'''

POOL = '''
import json, multiprocessing, os, sys, time
from pathlib import Path

import anvil_client

anvil_client.configure(heartbeat_interval=1, backoff_initial=0.1, backoff_max=1)
BOOT = anvil_client.prompt("greeting.welcome", customer_name="Ada")  # the parent starts the client


def serve(_):
    return (os.getpid(), anvil_client.prompt("greeting.welcome", customer_name="Ada"), time.time())


if __name__ == "__main__":
    workdir = Path(sys.argv[1])
    results, pause, stop = workdir / "results.jsonl", workdir / "pause", workdir / "stop"
    deadline = time.monotonic() + 55  # never outlive the test
    pool = multiprocessing.get_context("fork").Pool(4, maxtasksperchild=5)
    with results.open("a") as handle:
        while not stop.exists() and time.monotonic() < deadline:
            if pause.exists():
                time.sleep(0.05)
                continue
            issued = time.time()
            for pid, text, at in pool.map(serve, range(4), chunksize=1):
                handle.write(json.dumps([issued, pid, text, at, time.time()]) + "\\n")
            handle.flush()
            time.sleep(0.02)
    pool.terminate()
    pool.join()
'''


# ------------------------------------------------------------------------------------------------ /proc


def descendants(root: int) -> set[int]:
    """``root`` and every live process below it."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                grew = True
    return {pid for pid in found if pid == root or pid in parents}


def tcp_to_port(port: int) -> dict[int, str]:
    """Socket inode -> state (hex, "01" is ESTABLISHED) of every IPv4 TCP socket whose remote port is ``port``."""
    sockets: dict[int, str] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if int(parts[2].rsplit(":", 1)[1], 16) == port:
            sockets[int(parts[9])] = parts[3]
    return sockets


def local_ports(port: int) -> dict[int, int]:
    """Socket inode -> local port, for the connections to ``port``."""
    ports: dict[int, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if int(parts[2].rsplit(":", 1)[1], 16) == port:
            ports[int(parts[9])] = int(parts[1].rsplit(":", 1)[1], 16)
    return ports


def socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                match = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
                if match:
                    inodes.add(int(match.group(1)))
    return inodes


@dataclass
class SocketWatch:
    """Samples which process holds which connection to the FORGE; remembers any held by two processes."""

    root: int
    port: int
    shared: list[str] = field(default_factory=list)
    _last_shared: dict[int, frozenset[int]] = field(default_factory=dict)
    samples: int = 0

    def sample(self) -> dict[int, set[int]]:
        """pid -> inodes of its ESTABLISHED connections to the FORGE."""
        forge = tcp_to_port(self.port)
        held: dict[int, set[int]] = {}
        owners: dict[int, set[int]] = {}
        for pid in descendants(self.root):
            mine = {inode for inode in socket_inodes(pid) if inode in forge}
            for inode in mine:
                owners.setdefault(inode, set()).add(pid)
            held[pid] = {inode for inode in mine if forge[inode] == "01"}
        shared = {inode: frozenset(pids) for inode, pids in owners.items() if len(pids) > 1}
        # A fork copies every descriptor; the child's hook closes its copy of the parent's stream at once. Only
        # a socket shared in two samples in a row (>= 0.1 s apart) is a leak, not a fork caught mid-way.
        for inode, pids in shared.items():
            if self._last_shared.get(inode) == pids:
                self.shared.append(f"socket {inode} to the FORGE held by processes {sorted(pids)}")
        self._last_shared = shared
        self.samples += 1
        return held

    def streams(self, seconds: float = 1.2) -> dict[int, set[int]]:
        """pid -> connections to the FORGE that stayed ESTABLISHED through ``seconds`` of samples (streams)."""
        first = self.sample()
        steady = {pid: set(inodes) for pid, inodes in first.items()}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.15)
            now = self.sample()
            steady = {pid: inodes & now.get(pid, set()) for pid, inodes in steady.items() if pid in now}
        return steady


def check_streams(watch: SocketWatch, started: Iterable[int], label: str) -> dict[int, set[int]]:
    """Exactly one long-lived stream in each process that started its sync, at most one in any other."""
    streams = watch.streams()
    started = set(started) & set(streams)
    assert watch.root in streams, f"{label}: the parent {watch.root} is gone"
    too_many = {pid: sorted(inodes) for pid, inodes in streams.items() if len(inodes) > 1}
    assert not too_many, (
        f"{label}: more than one long-lived connection to the FORGE: {too_many}; every process: {streams}; "
        f"the parent is {watch.root}; local ports: {local_ports(watch.port)}"
    )
    missing = sorted(pid for pid in started | {watch.root} if len(streams[pid]) != 1)
    assert not missing, f"{label}: no stream open in processes {missing} (of {sorted(streams)}): {streams}"
    assert not watch.shared, f"{label}: shared sockets: {watch.shared}"
    return streams


# --------------------------------------------------------------------------------------------- the FORGE


def instance_groups(forge: ForgeProcess) -> dict[str, list[int]]:
    """The FORGE's instances page: instance id -> the process ids listed under it."""
    from tests.integration.test_instance_processes import instance_blocks, process_ids, sign_in

    viewer = sign_in(forge)
    try:
        page = viewer.get("/o/acme/instances/")
    finally:
        viewer.close()
    assert page.status_code == 200
    return {instance: process_ids(block) for instance, block in instance_blocks(page.text).items()}


def check_one_instance(forge: ForgeProcess, pids: set[int], label: str) -> tuple[str, list[int]]:
    """Every process in ``pids`` checked in under one and the same instance id."""
    deadline = time.monotonic() + 10
    while True:
        groups = instance_groups(forge)
        holding = {instance for instance, listed in groups.items() if pids & set(listed)}
        listed = set().union(*groups.values()) if groups else set()
        if len(groups) == 1 and pids <= listed:
            instance, processes = next(iter(groups.items()))
            return instance, processes
        assert time.monotonic() < deadline, (
            f"{label}: processes {sorted(pids)} should be listed under one instance; the FORGE shows {groups} "
            f"(instances holding them: {sorted(holding)})"
        )
        time.sleep(0.3)


# ------------------------------------------------------------------------------------------ the results


@dataclass
class Served:
    issued: float  # when the test (or the Pool's parent) issued the task
    pid: int
    text: str
    at: float  # when the worker rendered the prompt
    received: float  # when the result came back


def judge(label: str, results: list[Served], published: float, publish_started: float) -> str:
    """The issue's assertions over every task result; returns the summary line."""
    assert {r.text for r in results} <= {V1, V2}, {r.text for r in results} - {V1, V2}
    before = [r for r in results if r.at < publish_started]
    assert before and all(r.text == V1 for r in before), "every task before the publish serves version 1"
    pids_before = {r.pid for r in before}
    assert len(pids_before) >= WORKERS, f"{label}: only {sorted(pids_before)} served before the publish"

    # Every task executed later than CONTRACT s after the publish command returned serves version 2.
    late_v1 = [r for r in results if r.text == V1 and r.at >= published + CONTRACT]
    assert not late_v1, f"{label}: version 1 served {[(r.pid, round(r.at - published, 3)) for r in late_v1]} s " \
        "after the publish returned"
    late = {r.pid for r in results if r.at >= published + CONTRACT}
    assert len(late) >= 2, f"{label}: too few processes served after the publish: {sorted(late)}"
    assert max(r.at for r in results) >= published + AFTER - 1, f"{label}: tasks stopped too early"

    # No process serves version 1 after it served version 2.
    first_v2: dict[int, float] = {}
    for r in sorted(results, key=lambda r: r.at):
        if r.text == V2:
            first_v2.setdefault(r.pid, r.at)
        elif r.pid in first_v2:
            pytest.fail(f"{label}: process {r.pid} served version 1 at {r.at - published:+.3f} s after it served "
                        f"version 2 at {first_v2[r.pid] - published:+.3f} s")

    # A replaced child (first seen after the publish started) never serves version 1 for a task issued after
    # the host served version 2.
    first_seen: dict[int, float] = {}
    for r in results:
        first_seen[r.pid] = min(first_seen.get(r.pid, r.at), r.at)
    replaced = {pid for pid, at in first_seen.items() if at >= publish_started}
    assert replaced, f"{label}: no child was replaced after the publish"
    host_on_v2 = min(r.received for r in results if r.text == V2)
    stale = [r for r in results if r.pid in replaced and r.issued > host_on_v2 and r.text == V1]

    def history(pid: int) -> list[tuple[str, float, float]]:
        return [("v2" if r.text == V2 else "v1", round(r.issued - host_on_v2, 3), round(r.at - host_on_v2, 3))
                for r in sorted(results, key=lambda r: r.at) if r.pid == pid]

    assert not stale, (
        f"{label}: replaced children served version 1 for tasks issued after the host served version 2 (times "
        f"relative to that, issued and served): {[(pid, history(pid)) for pid in sorted({r.pid for r in stale})]}"
    )
    last_v1 = max((r.at for r in results if r.text == V1), default=publish_started) - published
    served_v2 = min(first_v2.values()) - published
    born_stale = sorted({r.pid for r in results if r.pid in replaced and r.text == V1})
    return (
        f"{label}: {len(first_seen)} children ({len(replaced)} forked after the publish, {len(born_stale)} of them "
        f"served v1 first), {len(results)} tasks; first v2 {served_v2:+.3f} s, last v1 {last_v1:+.3f} s, relative "
        f"to the publish command's return (which took {published - publish_started:.2f} s)"
    )


def stop(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM the process's group (we started it in a session of its own), then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def client_env(forge: ForgeProcess, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "DJANGO_", "CELERY_"))}
    env.update(
        ANVIL_FORGE_URL=forge.url,
        ANVIL_TOKEN=live_token(forge),
        ANVIL_CACHE_DIR=str(tmp_path / "cache"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def problems_in(log: str) -> list[str]:
    return [line for line in log.splitlines()
            if "Traceback" in line or re.search(r"\b(ERROR|CRITICAL)\b", line) or "Exception" in line]


# ------------------------------------------------------------------------------------------------ Celery


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (the Celery test runs its own on a loopback port)")
    import redis

    port = free_port()
    log = (tmp_path / "redis.log").open("wb")
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping()
                break
            except redis.exceptions.ConnectionError:
                assert process.poll() is None, (tmp_path / "redis.log").read_text()
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(process, 5)
        log.close()


def test_celery_prefork_children_all_serve_a_new_version_within_the_contract(
    make_forge: Callable[..., ForgeProcess], tmp_path: Path, redis_url: str
) -> None:
    from celery import Celery

    forge = make_forge(env=FAST)
    (tmp_path / "tasks.py").write_text(TASKS)
    env = client_env(forge, tmp_path, BROKER_URL=redis_url)
    celery = Path(sys.executable).with_name("celery")
    log_path = tmp_path / "celery.log"
    log = log_path.open("wb")
    worker = subprocess.Popen(
        [str(celery), "-A", "tasks", "worker", "--pool", "prefork", "--concurrency", str(WORKERS),
         "--max-tasks-per-child", str(TASKS_PER_CHILD), "--loglevel", "INFO", "--without-heartbeat",
         "--without-mingle", "--without-gossip", "--hostname", "anvil-test@%h"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    caller = Celery("caller", broker=redis_url, backend=redis_url)
    # A result collected after Redis is gone (by a later test's garbage collection) must not retry for ever.
    caller.conf.result_backend_transport_options = {"retry_policy": {"max_retries": 0}}
    watch = SocketWatch(worker.pid, forge.port)
    results: list[Served] = []
    pending: list[tuple[float, object]] = []

    def pump(until: Callable[[], bool], limit: float) -> None:
        """Keep 8 tasks in flight (a child being replaced holds some back for seconds), collect the results."""
        deadline = time.monotonic() + limit
        next_sample = 0.0
        while not until():
            assert time.monotonic() < deadline, f"{len(results)} results: {log_path.read_text()[-3000:]}"
            assert worker.poll() is None, log_path.read_text()[-3000:]
            while len(pending) < 8:
                pending.append((time.time(), caller.send_task("tasks.serve")))
            waiting = []
            for issued, result in pending:
                if result.ready():  # type: ignore[attr-defined]
                    pid, text, at = result.get(timeout=5)  # type: ignore[attr-defined]
                    results.append(Served(issued, pid, text, at, time.time()))
                else:
                    waiting.append((issued, result))
            pending[:] = waiting
            if time.monotonic() >= next_sample:
                watch.sample()
                next_sample = time.monotonic() + 0.1
            time.sleep(0.02)

    def drain() -> None:
        for issued, result in pending:
            pid, text, at = result.get(timeout=20)  # type: ignore[attr-defined]
            results.append(Served(issued, pid, text, at, time.time()))
        pending.clear()

    try:
        # Every child starts: at least three generations of children serve tasks.
        pump(lambda: len({r.pid for r in results}) >= 3 * WORKERS, 40)
        drain()
        assert {r.text for r in results} == {V1}

        # Quiet: one stream in the master and in each child that ran a task; nothing shared.
        time.sleep(1.2)
        streams = check_streams(watch, {r.pid for r in results}, "celery")
        instance, listed = check_one_instance(forge, {watch.root} | {r.pid for r in results if r.pid in streams},
                                              "celery")

        # Publish while tasks keep flowing, so the switch from version 1 to version 2 is seen as it happens.
        returned: dict[str, float] = {}
        publisher = threading.Thread(target=lambda: (publish(forge, 2), returned.setdefault("at", time.time())))
        publish_started = time.time()
        publisher.start()
        pump(lambda: not publisher.is_alive() and time.time() >= returned.get("at", 0) + AFTER, 30)
        publisher.join()
        assert "at" in returned, "the publish command failed (see the output above)"
        published = returned["at"]
        drain()
        time.sleep(1.2)
        after = check_streams(watch, {r.pid for r in results}, "celery after the publish")
        check_one_instance(forge, {watch.root} | {r.pid for r in results if r.pid in after}, "celery after")
        assert worker.poll() is None, log_path.read_text()[-3000:]
        log_text = log_path.read_text(errors="replace")
        assert not problems_in(log_text), "\n".join(problems_in(log_text)[:20])
        assert "applied set core version 2" in log_text
        summary = judge("celery", results, published, publish_started)
        print(f"{summary}; one stream per process ({len(streams)} then {len(after)} processes, {watch.samples} "
              f"/proc samples, no shared socket); one instance {instance} listing {len(listed)} processes")
    finally:
        pending.clear()  # while Redis is up: a result's finaliser talks to it
        gc.collect()  # results caught in reference cycles too
        stop(worker)
        log.close()
        with contextlib.suppress(Exception):
            caller.close()


# -------------------------------------------------------------------------------------- multiprocessing


def read_results(path: Path) -> list[Served]:
    if not path.exists():
        return []
    served = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line being written
            issued, pid, text, at, received = json.loads(line)
            served.append(Served(issued, pid, text, at, received))
    return served


def test_multiprocessing_pool_workers_all_serve_a_new_version_within_the_contract(
    make_forge: Callable[..., ForgeProcess], tmp_path: Path
) -> None:
    forge = make_forge(env=FAST)
    (tmp_path / "pool_app.py").write_text(POOL)
    env = client_env(forge, tmp_path)
    log_path = tmp_path / "pool.log"
    log = log_path.open("wb")
    results_path, pause, stop_file = tmp_path / "results.jsonl", tmp_path / "pause", tmp_path / "stop"
    parent = subprocess.Popen(
        [sys.executable, str(tmp_path / "pool_app.py"), str(tmp_path)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    watch = SocketWatch(parent.pid, forge.port)
    try:
        started = time.monotonic()
        while len({r.pid for r in read_results(results_path)}) < 2 * WORKERS:
            assert parent.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() - started < 40, f"workers seen: {[r.pid for r in read_results(results_path)]}"
            watch.sample()
            time.sleep(0.1)
        pause.touch()
        time.sleep(1.2)
        seen = {r.pid for r in read_results(results_path)}
        streams = check_streams(watch, seen, "multiprocessing")
        instance, listed = check_one_instance(forge, {watch.root} | (seen & set(streams)), "multiprocessing")
        pause.unlink()

        publish_started = time.time()
        publish(forge, 2)
        published = time.time()
        while time.time() < published + AFTER:
            assert parent.poll() is None, log_path.read_text()[-3000:]
            watch.sample()
            time.sleep(0.1)
        pause.touch()
        time.sleep(1.2)
        after = check_streams(watch, {r.pid for r in read_results(results_path)}, "multiprocessing after")
        check_one_instance(forge, {watch.root} | {r.pid for r in read_results(results_path) if r.pid in after},
                           "multiprocessing after")
        stop_file.touch()
        parent.wait(20)
        results = read_results(results_path)
        log_text = log_path.read_text(errors="replace")
        assert parent.returncode == 0, log_text[-3000:]
        assert not problems_in(log_text), "\n".join(problems_in(log_text)[:20])
        summary = judge("multiprocessing", results, published, publish_started)
        print(f"{summary}; one stream per process ({len(streams)} then {len(after)} processes, {watch.samples} "
              f"/proc samples, no shared socket); one instance {instance} listing {len(listed)} processes")
    finally:
        stop(parent)
        log.close()

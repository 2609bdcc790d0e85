"""uWSGI with 4 workers: every worker starts, every worker serves each publish, none ever goes back.

uWSGI forks its workers in C. Without ``--lazy-apps`` it loads the application in the master and forks
every worker from it, at start and whenever ``--max-requests`` replaces one; Python's fork hooks do not run.
A sync thread alive in the master could hang a new worker for ever (issue 20: 17 of 40 workers). The app
here starts the client in the master, as the Django and Flask integrations do, and renders a prompt at
import. Each combination of ``--lazy-apps`` and ``--enable-threads`` (threads are on by default since
uWSGI 2.0.27) must give: 4 workers that answer, and so do workers the master forks again to replace one
killed, before and after the publish; each worker applies version 2 within 1.5 s of the publish; a
replacement forked after it (from a master that still holds version 1) serves version 2 from its first
answer; no worker serves version 1 after it served version 2; one stream per process, and no socket to
the FORGE shared between processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.forge_process import ForgeProcess, free_port
from tests.integration.test_client_live import FAST, V1, V2, live_token, publish

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(sys.platform == "win32", reason="pre-fork server"),
]

UWSGI = Path(sys.executable).with_name("uwsgi")

APP = '''
import os, time
import anvil_client

client = anvil_client.configure(heartbeat_interval=1, backoff_initial=0.1, backoff_max=1)
GREETING = client.prompt("greeting.welcome", customer_name="Ada")  # in the master, before the fork
UPDATES = os.environ["UPDATES_FILE"]


@client.on_update
def record(change):
    with open(UPDATES, "a") as handle:
        handle.write(f"{os.getpid()} {change['version']} {time.time()}\\n")


def application(environ, start_response):
    body = f"{os.getpid()}|{client.prompt('greeting.welcome', customer_name='Ada')}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        pid, text = response.read().decode().split("|", 1)
        return int(pid), text


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children[parent].append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def sockets_to_port(pids: list[int], port: int) -> dict[int, list[int]]:
    """Per pid, the inodes of its TCP sockets connected to 127.0.0.1:``port``."""
    to_port: set[int] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if remote_port == port:
            to_port.add(int(fields[9]))
    result: dict[int, list[int]] = {}
    for pid in pids:
        inodes = []
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and int(target[8:-1]) in to_port:
                    inodes.append(int(target[8:-1]))
        except OSError:
            continue
        result[pid] = inodes
    return result


def worker_pids(master: int) -> set[int]:
    """The application workers below the master (``--auto-procname`` names them), not the HTTP router."""
    pids = set()
    for pid in process_tree(master):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"uWSGI worker"):
                pids.add(pid)
        except OSError:
            continue
    return pids


def stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGINT)  # uWSGI: SIGINT ends it; SIGTERM would reload before 2.1
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.mark.parametrize("lazy_apps", [False, True], ids=["default", "lazy-apps"])
@pytest.mark.parametrize("enable_threads", [False, True], ids=["threads-default", "enable-threads"])
def test_every_uwsgi_worker_starts_and_serves_each_publish_and_never_goes_back(
    make_forge: Callable[..., ForgeProcess], tmp_path: Path, lazy_apps: bool, enable_threads: bool
) -> None:
    forge = make_forge(env=FAST)
    forge_port = int(forge.url.rsplit(":", 1)[1])
    (tmp_path / "app.py").write_text(APP)
    updates = tmp_path / "updates.log"
    log_path = tmp_path / "uwsgi.log"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "DJANGO_"))}
    env.update(
        ANVIL_FORGE_URL=forge.url,
        ANVIL_TOKEN=live_token(forge),
        ANVIL_CACHE_DIR=str(tmp_path / "cache"),
        UPDATES_FILE=str(updates),
    )
    args = [
        str(UWSGI), "--master", "--processes", "4", "--http", f"127.0.0.1:{port}", "--chdir", str(tmp_path),
        "--wsgi-file", "app.py", "--disable-logging", "--die-on-term", "--auto-procname",
        "--home", sys.prefix,
    ]
    if lazy_apps:
        args.append("--lazy-apps")
    if enable_threads:
        args.append("--enable-threads")
    log = log_path.open("wb")
    server = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    served: dict[int, list[str]] = defaultdict(list)

    def ask() -> tuple[int, str]:
        pid, text = get(f"http://127.0.0.1:{port}/")
        served[pid].append(text)
        return pid, text

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                ask()
                break
            except OSError:
                assert server.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "uWSGI did not start:\n" + log_path.read_text()[-3000:]
                time.sleep(0.1)
        # Every worker answers: a hung one never would. Workers replaced by --max-requests count too.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if len(set(served) & worker_pids(server.pid)) >= 4:
                break
            ask()
        live_workers = {pid for pid in served if Path(f"/proc/{pid}").exists()}
        assert len(live_workers) >= 4, f"only {sorted(live_workers)} answered:\n{log_path.read_text()[-3000:]}"

        def replace_a_worker() -> int:
            """Kill a worker; the master forks a new one, which must answer (a hung one never would)."""
            before = worker_pids(server.pid)
            os.kill(min(before), signal.SIGKILL)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                new = worker_pids(server.pid) - before
                if new and (pid := new.pop()) in served:
                    return pid
                ask()
            raise AssertionError(f"no replacement worker answered:\n{log_path.read_text()[-3000:]}")

        replace_a_worker()
        assert {text for texts in served.values() for text in texts} == {V1}
        time.sleep(1.5)  # every worker's stream is open

        tree = process_tree(server.pid)
        sockets = sockets_to_port(tree, forge_port)
        inodes = [inode for found in sockets.values() for inode in found]
        assert len(inodes) == len(set(inodes)), f"a socket to the FORGE is shared between processes: {sockets}"
        assert all(len(found) <= 1 for found in sockets.values()), f"more than one stream in a process: {sockets}"
        assert sockets.get(server.pid) == [], f"the master holds a socket to the FORGE: {sockets}"

        at_publish = worker_pids(server.pid)
        publish(forge, 2)
        published = time.time()
        deadline = time.monotonic() + 5
        applied: dict[int, float] = {}
        waiting = at_publish
        while time.monotonic() < deadline:
            if updates.exists():
                for line in updates.read_text().splitlines():
                    pid, version, at = line.split()
                    if int(version) == 2:
                        applied.setdefault(int(pid), float(at))
            waiting = {pid for pid in at_publish - set(applied) if Path(f"/proc/{pid}").exists()}
            if not waiting:
                break
            time.sleep(0.05)
        assert not waiting, f"workers {sorted(waiting)} never applied version 2:\n{log_path.read_text()[-3000:]}"
        late = {pid: at - published for pid, at in applied.items() if at - published > 1.5}
        assert not late, f"workers took longer than 1.5 s: {late}\n{log_path.read_text()[-3000:]}"
        replacement = replace_a_worker()  # forked from a master that never took version 2
        assert served[replacement][0] == V2, f"the replacement {replacement} served {served[replacement]}"
        # Each worker now serves version 2, and never version 1 again (the replaced ones included).
        end = time.monotonic() + 3
        while time.monotonic() < end:
            ask()
        for pid, texts in served.items():
            if V2 in texts:
                assert V1 not in texts[texts.index(V2):], f"worker {pid} went back to version 1: {texts}"
        alive = worker_pids(server.pid)
        assert {texts[-1] for pid, texts in served.items() if pid in alive} == {V2}, dict(served)
        print(
            f"uWSGI lazy_apps={lazy_apps} enable_threads={enable_threads}: {len(served)} workers answered "
            f"{sum(map(len, served.values()))} requests "
            f"(2 replaced after a kill), version 2 applied by {len(applied)} processes within "
            f"{max(applied.values()) - published:+.3f} s of the publish"
        )
        output = log_path.read_text()
        assert "Traceback" not in output, output[-3000:]
        assert "ERROR" not in output, output[-3000:]
    finally:
        stop(server)
        log.close()

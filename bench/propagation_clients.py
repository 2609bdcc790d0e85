"""Propagation to real LIVE clients: publish to the moment each ``anvil_client.Client`` returns the new text.

``bench.propagation`` measures delivery over thousands of streams with raw-socket clients that stamp the
arrival of the release event. This figure closes the loop with the real client library: 4, then 16,
processes, each running one ``anvil_client.Client`` connected to the FORGE (its own sync thread, SSE
stream, bundle verification, template compilation, snapshot swap, disk-cache write), and a thread that
calls ``client.prompt(...)`` every ``POLL_S`` seconds and stamps the wall-clock time the returned text
first carries the new round's marker. Publishes come from ``bench.propagation``'s publisher process
(the real ``version_publish`` service; it appends ``round N`` to the set's first prompt), which reads its
clock just before COMMIT. Latency = first new text - that time (one machine, one clock; resolution
``POLL_S``).
The same ``on_update`` callback time is recorded beside it (it runs after the disk-cache write).

One FORGE process on PostgreSQL (LISTEN/NOTIFY) when it answers, else SQLite with a fast periodic check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, log, percentile, running_forge, summarize, write_result
from bench.idle_streams import create_token

STEPS = (4, 16)  # client processes: few, then many sharing the machine's 2 cores
ROUNDS = 5
POLL_S = 0.002
ROUND_WAIT_S = 1.5
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
SAMPLE_VALUES = {"string": "Ada", "number": 3, "boolean": True, "list": ["a"], "object": {"a": 1}}


# -- one client process ---------------------------------------------------------------------------------------


def client_main(url: str, token: str) -> int:
    import anvil_client

    cache_dir = Path(tempfile.mkdtemp(prefix="anvil-bench-client-"))
    client = anvil_client.Client(forge_url=url, token=token, cache_dir=cache_dir, startup_timeout=15)
    client.start()
    prompt_id = next(i for i in client.ids() if ":" not in i)
    details = client.get(prompt_id)
    variables = {p["name"]: SAMPLE_VALUES.get(p["type"], "x") for p in details["parameters"]}
    for name in details.get("variables", []):
        variables.setdefault(name, "x")
    seen: dict[str, float] = {}
    updates: dict[str, float] = {}  # marker -> when on_update ran for the version that brought it
    stop = threading.Event()
    markers = [f"round {n}" for n in range(64)]

    def poll() -> None:
        prompt = client.prompt
        while not stop.is_set():
            text = prompt(prompt_id, variables)
            now = time.time()
            for marker in markers:
                if marker not in seen and text.rstrip().endswith(marker):
                    seen[marker] = now
            time.sleep(POLL_S)

    def on_update(change: dict[str, Any]) -> None:
        now = time.time()
        text = client.prompt(prompt_id, variables).rstrip()
        for marker in markers:
            if text.endswith(marker):
                updates.setdefault(marker, now)

    client.on_update(on_update)
    threading.Thread(target=poll, name="bench.poll", daemon=True).start()
    sys.stdout.write(json.dumps({"ready": True, "prompt_id": prompt_id, "status": client.status()["source"]}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        command = line.strip()
        if command == "times":
            sys.stdout.write(json.dumps({"seen": seen, "updates": updates}) + "\n")
            sys.stdout.flush()
        else:
            break
    stop.set()
    client.close()
    return 0


# -- the benchmark --------------------------------------------------------------------------------------------


class Child:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", *args], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def ask(self, line: str | None) -> dict[str, Any]:
        assert self.process.stdin and self.process.stdout
        if line is not None:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"child {self.process.args} exited ({self.process.poll()})")
        return json.loads(answer)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


def postgres_url() -> str | None:
    url = os.environ.get("ANVIL_BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3):
            return url
    except Exception:
        return None


def _step_figures(reports: list[dict[str, Any]], commits: list[tuple[int, float]]) -> dict[str, Any]:
    latencies: list[float] = []
    callbacks: list[float] = []
    missing = 0
    for report in reports:
        for index, committed_at in commits:
            at = report["seen"].get(f"round {index}")
            if at is None:
                missing += 1
            else:
                latencies.append((at - committed_at) * 1000)
            callback_at = report["updates"].get(f"round {index}")
            if callback_at is not None:
                callbacks.append((callback_at - committed_at) * 1000)
    return {
        "clients": len(reports),
        "rounds": len(commits),
        "p50_ms": round(percentile(latencies, 50), 2) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 2) if latencies else None,
        "latency_ms": summarize(latencies, 2),
        "on_update_callback_ms": summarize(callbacks, 2),
        "missing": missing,
        # Samples earlier than the publisher's stamp would mean its clock is read after the commit; they stay
        # in (as they are) and are counted here (bench.propagation reads it just before COMMIT).
        "before_commit_stamp": sum(1 for value in latencies if value < 0),
    }


def main() -> int:
    postgres = postgres_url()
    env = {"ANVIL_LOG_LEVEL": "WARNING"}
    if not postgres:
        env["ANVIL_RELEASE_POLL_SECONDS"] = "0.05"
    database = "PostgreSQL" if postgres else "SQLite"
    log(f"propagation_clients: {STEPS} real client processes, {ROUNDS} publishes per step, {database}")
    steps: dict[str, Any] = {}
    with running_forge(env=env, postgres_url=postgres) as forge:
        token = create_token(forge)
        child_env = {**forge.env, "PYTHONPATH": str(ROOT)}
        publisher = Child(["bench.propagation", "publisher", str(ROUNDS * len(STEPS))], child_env)
        client_env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "DJANGO_"))}
        client_env["PYTHONPATH"] = str(ROOT)
        clients: list[Child] = []
        try:
            log(f"publisher prepared {publisher.ask(None)['prepared']} versions")
            round_index = 0
            for step in STEPS:
                added = [
                    Child(["bench.propagation_clients", "client", forge.url, token], client_env)
                    for _ in range(step - len(clients))
                ]
                ready = [c.ask(None) for c in added]
                clients += added
                log(f"{len(clients)} clients ready ({sum(1 for r in ready if r.get('ready'))} new)")
                time.sleep(1.0)
                commits: list[tuple[int, float]] = []
                for _ in range(ROUNDS):
                    published = publisher.ask("publish")
                    commits.append((round_index, published["committed_at"]))
                    round_index += 1
                    time.sleep(ROUND_WAIT_S)
                steps[str(step)] = _step_figures([c.ask("times") for c in clients], commits)
                log(f"propagation_clients: {step} clients: {steps[str(step)]}")
        finally:
            for child in [publisher, *clients]:
                child.close()
    largest = steps.get(str(max(STEPS)), {})
    figures = {
        "method": f"processes with one anvil_client.Client each, on this machine, following one FORGE "
        f"({'PostgreSQL LISTEN/NOTIFY' if postgres else 'SQLite, periodic check 0.05 s'}); {ROUNDS} publishes per "
        f"step, {ROUND_WAIT_S} s apart, by the real version_publish service; latency = first prompt() returning "
        f"the new text (polled every {POLL_S * 1000:.0f} ms) - the publisher's clock just before COMMIT",
        "steps": steps,
        "clients": max(STEPS),
        "p50_ms": largest.get("p50_ms"),
        "p99_ms": largest.get("p99_ms"),
        "target_p99_ms": 100,
    }
    path = write_result("propagation_clients", figures)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        sys.exit(client_main(sys.argv[2], sys.argv[3]))
    sys.exit(main())

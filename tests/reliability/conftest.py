"""Fixtures for the reliability suite: host application processes (``host_app``) and their reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Client timings that make faults and recoveries happen within a test's patience (and bounded).
FAST_CLIENT = {
    "heartbeat_interval": 0.5,
    "read_timeout": 1.5,
    "backoff_initial": 0.1,
    "backoff_max": 0.5,
    "backoff_reset_after": 5,
    "poll_interval": 0.5,
    "checkin_interval": 1,
    "connect_timeout": 2,
    "startup_timeout": 2,
    "state_check_interval": 0.1,
}


@dataclass
class HostApp:
    """One host application process (``tests/reliability/host_app.py``) and the events it printed."""

    env: dict[str, str]
    options: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    process: subprocess.Popen[str] | None = None
    stderr_path: Path | None = None

    def start(self) -> HostApp:
        assert self.stderr_path is not None
        self.events = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.host_app", json.dumps(self.options)],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,  # a pipe, not a file: a process with a file size limit can still log
            text=True,
        )
        self._threads = [
            threading.Thread(target=self._read, args=(self.process,), daemon=True),
            threading.Thread(target=self._copy_stderr, args=(self.process,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"event": "garbage", "line": line})

    def _copy_stderr(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None and self.stderr_path is not None
        with self.stderr_path.open("a") as log:
            for line in process.stderr:
                log.write(line)
                log.flush()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict[str, Any]:
        """The first event (old or new) for which ``predicate`` is true; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            events = list(self.events)
            for event in events[seen:]:
                if predicate(event):
                    return event
            seen = len(events)
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching event within {timeout} s; events: {events[-10:]}\n{self.log()}")
            if self.process is not None and self.process.poll() is not None and seen == len(self.events):
                code = self.process.returncode
                raise AssertionError(f"host app exited ({code}); events: {events[-10:]}\n{self.log()}")
            time.sleep(0.02)

    def wait_text(self, fragment: str, timeout: float = 10) -> dict[str, Any]:
        return self.wait_for(lambda e: e["event"] == "render" and fragment in (e.get("text") or ""), timeout)

    def texts(self) -> list[str | None]:
        return [e.get("text") for e in self.events if e["event"] == "render"]

    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] in ("error", "garbage")]

    def started(self, timeout: float = 10) -> dict[str, Any]:
        return self.wait_for(lambda e: e["event"] == "started", timeout)

    def log(self) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for thread in getattr(self, "_threads", []):
            thread.join(timeout=5)  # everything it printed is read
        self.process = None


@pytest.fixture
def host_app(tmp_path: Path) -> Iterator[Callable[..., HostApp]]:
    """``host_app(forge_url=..., token=..., cache_dir=..., bootstrap=..., client={...}, **options)``: not started."""
    made: list[HostApp] = []

    def make(
        *,
        forge_url: str | None = None,
        token: str | None = None,
        cache_dir: Path | None = None,
        bootstrap: Path | None = None,
        client: dict[str, Any] | None = None,
        **options: Any,
    ) -> HostApp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "DJANGO_"))}
        env["PYTHONUNBUFFERED"] = "1"
        env["ANVIL_CACHE_DIR"] = str(cache_dir or tmp_path / "cache")
        if forge_url:
            env["ANVIL_FORGE_URL"] = forge_url
        if token:
            env["ANVIL_TOKEN"] = token
        if bootstrap:
            env["ANVIL_BOOTSTRAP"] = str(bootstrap)
        options = {"max_seconds": 60, **options, "client": {**FAST_CLIENT, **(client or {})}}
        app = HostApp(env=env, options=options, stderr_path=tmp_path / f"host-app-{len(made)}.log")
        made.append(app)
        return app

    yield make
    for app in made:
        app.stop()


@pytest.fixture
def fake() -> Iterator[Any]:
    """A misbehaving FORGE on loopback (tests/reliability/fake_forge.py), stopped after the test."""
    from tests.reliability.fake_forge import FakeForge

    forge = FakeForge().start()
    yield forge
    forge.stop()


def make_token(forge: Any, environment: str = "production", name: str = "reliability") -> str:
    output = forge.cli(
        "token", "create", "acme/support-bot", "--environment", environment, "--kind", "live", "--name", name
    )
    return output.splitlines()[0].strip()


def publish(forge: Any, version: int, environment: str = "production") -> None:
    forge.cli(
        "publish", "acme/support-bot/core", "--version", str(version), "--environment", environment, "--as", "editor"
    )


V1_GREETING = "Hi Ada!"  # the demo's greeting.welcome, version 1
V2_GREETING = "Hello Ada, welcome back!"  # version 2

"""What `make run` runs (anvil_forge.devrun): the FORGE and the demo LIVE app, connected, stopped by Ctrl-C.

The database is a migrated, demo-seeded copy (what `make run`'s migrate and demo steps make), on free ports
with a temporary ANVIL_DATA_DIR.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.forge_process import base_env, free_port, new_database

pytestmark = pytest.mark.integration


class DevRunProcess:
    def __init__(self, env: dict[str, str], forge_port: int, demo_port: int) -> None:
        self.forge_url = f"http://127.0.0.1:{forge_port}"
        self.demo_url = f"http://127.0.0.1:{demo_port}"
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "anvil_forge.devrun"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            if text in line:
                return
        raise AssertionError(f"devrun never printed {text!r}:\n{''.join(self.output)}")

    def interrupt(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def post(url: str, form: dict[str, str], headers: dict[str, str]) -> int:
    from urllib.parse import urlencode

    request = urllib.request.Request(url, data=urlencode(form).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def publish(env: dict[str, str], version: int) -> None:
    subprocess.run(
        [sys.executable, "-m", "anvil_forge.cli", "publish", "acme/support-bot/core", "--version", str(version),
         "--environment", "production", "--as", "editor"],
        env=env, check=True, capture_output=True, timeout=60,
    )


def port_is_free(port: int) -> bool:
    """Nothing listens on the port any more."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.fixture
def devrun_env(tmp_path: Path):
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    forge_port, demo_port = free_port(), free_port()
    env = base_env(data_dir, new_database(data_dir), f"http://127.0.0.1:{forge_port}")
    env.update(FORGE_PORT=str(forge_port), DEMO_PORT=str(demo_port), DEBUG="true")
    return env, data_dir, forge_port, demo_port


def until(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def test_make_run_serves_the_forge_and_a_demo_app_that_shows_a_publish_arriving(devrun_env):
    env, _data_dir, forge_port, demo_port = devrun_env
    run = DevRunProcess(env, forge_port, demo_port)
    try:
        run.wait_for("Logs:")
        banner = "".join(run.output)
        assert run.forge_url in banner and run.demo_url in banner
        assert "owner, admin, editor, reviewer, viewer" in banner and "anvil-demo" in banner

        assert get(run.forge_url + "/healthz")[0] == 200
        status, page = get(run.demo_url + "/")
        assert status == 200
        assert "Hi Grace!" in page  # greeting.welcome (version 1) rendered with the sample values
        prompts = json.loads(get(run.demo_url + "/api/prompts")[1])
        assert prompts["status"]["versions"] == {"core": 1}
        assert len(prompts["prompts"]) == 7
        assert [p["id"] for p in prompts["prompts"] if p["error"]] == []  # every sample value fits its prompt
        assert prompts["status"]["forge_url"] == run.forge_url

        publish(env, 2)

        def arrived():
            data = json.loads(get(run.demo_url + "/api/prompts")[1])
            # on_update runs just after the new version is swapped in: wait for both
            return data if data["status"]["versions"] == {"core": 2} and data["update"] else None

        data = until(arrived)
        assert data, "version 2 never reached the demo app"
        assert data["update"]["version"] == 2 and data["update"]["previous"] == 1
        assert "version 2 arrived" in get(run.demo_url + "/fragment")[1]
        admin_status, admin_page = 0, ""
        try:
            get(run.demo_url + "/anvil/")
        except urllib.error.HTTPError as exc:  # the admin page asks for its secret
            admin_status, admin_page = exc.code, exc.read().decode()
        assert admin_status == 401 and 'name="secret"' in admin_page
    finally:
        code = run.interrupt()
    assert code == 0, "".join(run.output)
    assert "Stopping" in "".join(run.output)
    assert until(lambda: port_is_free(forge_port) and port_is_free(demo_port), 10)


def test_make_run_twice_reuses_the_token_and_the_admin_page_runs_the_host(devrun_env):
    env, data_dir, forge_port, demo_port = devrun_env
    credentials = data_dir / "demo-app" / "anvil.credentials"
    first = DevRunProcess(env, forge_port, demo_port)
    try:
        first.wait_for("Logs:")
        token = credentials.read_text()
        secret = (data_dir / "demo-app" / "admin_secret").read_text()
    finally:
        assert first.interrupt() == 0, "".join(first.output)
    assert until(lambda: port_is_free(forge_port) and port_is_free(demo_port), 10)

    second = DevRunProcess(env, forge_port, demo_port)
    try:
        second.wait_for("Logs:")
        assert credentials.read_text() == token
        assert (data_dir / "demo-app" / "admin_secret").read_text() == secret
        assert "Hi Grace!" in get(second.demo_url + "/")[1]

        # The demo's admin page runs the host: FROZEN keeps version 1 through a publish, Sync now takes 2.
        admin = {"Authorization": f"Bearer {secret.strip()}"}
        assert post(second.demo_url + "/anvil/mode", {"mode": "frozen"}, admin) == 200
        publish(env, 2)

        def waiting():
            status = json.loads(get(second.demo_url + "/api/prompts")[1])["status"]
            return status["available"] == {"core": 2} and status

        status = until(waiting)
        assert status and status["versions"] == {"core": 1} and status["mode"] == "frozen"
        assert post(second.demo_url + "/anvil/sync", {}, admin) == 200
        assert json.loads(get(second.demo_url + "/api/prompts")[1])["status"]["versions"] == {"core": 2}
    finally:
        assert second.interrupt() == 0, "".join(second.output)


def test_make_run_refuses_clearly_when_a_port_is_taken(devrun_env):
    env, data_dir, forge_port, _demo_port = devrun_env
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", forge_port))
        busy.listen()
        result = subprocess.run(
            [sys.executable, "-m", "anvil_forge.devrun"], env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1
    assert f"port {forge_port} (FORGE_PORT) is in use" in result.stderr
    assert not (data_dir / "logs").exists()


CHROMIUM = os.environ.get("ANVIL_CHROMIUM", "/usr/bin/chromium")


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Debian's Chromium is not at {CHROMIUM}")
def test_demo_page_open_in_a_browser_shows_a_publish_without_a_reload(devrun_env):
    from playwright.sync_api import sync_playwright

    env, _, forge_port, demo_port = devrun_env
    run = DevRunProcess(env, forge_port, demo_port)
    try:
        run.wait_for("Logs:")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking",
                      "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1"],
            )
            try:
                page = browser.new_page()
                page.goto(run.demo_url + "/")
                assert page.locator("#greeting\\.welcome .rendered").inner_text().startswith("Hi Grace!")
                page.evaluate("window.sameDocument = true")  # gone if the page were reloaded
                publish(env, 2)
                page.wait_for_selector("text=version 2 arrived", timeout=10_000)  # no reload: the page polls
                assert page.locator("#greeting\\.welcome .rendered").inner_text().startswith("Hello Grace")
                assert page.evaluate("window.sameDocument") is True
            finally:
                browser.close()
    finally:
        assert run.interrupt() == 0, "".join(run.output)


def test_make_run_on_other_ports_names_them_everywhere(tmp_path):
    """`make run FORGE_PORT=... DEMO_PORT=...` as typed: the Makefile's own steps (migrate, demo) for real, with
    the last step (the servers, tested above) replaced by a stand-in that shows what it was given."""
    root = Path(__file__).resolve().parents[2]
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "anvil-forge").symlink_to(Path(sys.executable).with_name("anvil-forge"))
    stand_in = venv / "bin" / "python"
    stand_in.write_text('#!/bin/sh\necho "servers: $* FORGE_PORT=$FORGE_PORT ANVIL_PUBLIC_URL=$ANVIL_PUBLIC_URL"\n')
    stand_in.chmod(0o755)
    (venv / ".installed").touch()  # the packages are installed: make skips that step
    forge_port, demo_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "DJANGO_", "MAKE")) and k not in (
        "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL")}
    env["ANVIL_DATA_DIR"] = str(tmp_path / "var")

    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(root), "run", f"VENV={venv}", f"FORGE_PORT={forge_port}",
         f"DEMO_PORT={demo_port}"],
        env=env, capture_output=True, text=True, timeout=300,
    )

    assert result.returncode == 0, result.stderr + result.stdout
    assert f"Sign in at http://127.0.0.1:{forge_port}/ as one of" in result.stdout
    assert ":8000" not in result.stdout
    assert f"servers: -m anvil_forge.devrun FORGE_PORT={forge_port}" in result.stdout

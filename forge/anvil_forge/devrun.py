"""What ``make run`` runs after ``migrate`` and ``demo``: the FORGE and the demo LIVE application, side by side.

1. starts ``anvil-forge serve`` on ``FORGE_PORT`` (8000);
2. reuses the live token kept in ``$ANVIL_DATA_DIR/demo-app/anvil.credentials`` while the FORGE accepts it,
   else creates one for acme/support-bot (production) with ``anvil-forge token create``;
3. runs ``anvil connect`` for the demo application's directory, ``$ANVIL_DATA_DIR/demo-app/`` (its
   ``anvil.toml``, token and cache live there), which also pulls the current prompts into its cache;
4. starts ``demo/demo_app.py`` on ``DEMO_PORT`` (8001), with its admin page at ``/anvil/``;
5. prints the addresses and logins, and stops both on Ctrl-C (or SIGTERM).

Running it again reuses the token, the admin secret and the cache, so it is safe to run twice.
The two servers log to ``$ANVIL_DATA_DIR/logs/``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HOST = "127.0.0.1"
PROJECT = "acme/support-bot"
ENVIRONMENT = "production"
USERS = ("owner", "admin", "editor", "reviewer", "viewer")
DEMO_PASSWORD = "anvil-demo"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


class DevRunError(Exception):
    """Something stopped ``make run``; the message says what to do."""


class DevRun:
    def __init__(self, *, data_dir: Path, forge_port: int, demo_port: int, demo_script: Path) -> None:
        self.data_dir = data_dir
        self.forge_port = forge_port
        self.demo_port = demo_port
        self.demo_script = demo_script
        self.app_dir = data_dir / "demo-app"
        self.log_dir = data_dir / "logs"
        self.forge_url = f"http://{HOST}:{forge_port}"
        self.demo_url = f"http://{HOST}:{demo_port}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = threading.Event()

    # -- steps ---------------------------------------------------------------------------------------------

    def run(self) -> int:
        for name, port in (("FORGE_PORT", self.forge_port), ("DEMO_PORT", self.demo_port)):
            _check_port_free(name, port)
        self.app_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.start_forge()
        token = self.token()
        self.connect(token)
        secret = self.admin_secret()
        self.start_demo(secret)
        self.banner(secret)
        return self.wait()

    def start_forge(self) -> None:
        env = {**os.environ, "ANVIL_PUBLIC_URL": os.environ.get("ANVIL_PUBLIC_URL") or self.forge_url}
        command = [sys.executable, "-m", "anvil_forge.cli", "serve", "--host", HOST, "--port", str(self.forge_port)]
        self._spawn("forge", command, env=env)
        self._wait_healthy("forge", self.forge_port)

    def token(self) -> str:
        """The stored token while the FORGE accepts it, else a new one (printed by the FORGE only once)."""
        from anvil_client._config import ConfigError, read_credentials

        credentials = self.app_dir / "anvil.credentials"
        if credentials.exists():
            with contextlib.suppress(ConfigError):
                stored = read_credentials(credentials)
                if self._token_accepted(stored):
                    return stored
        result = subprocess.run(
            [sys.executable, "-m", "anvil_forge.cli", "token", "create", PROJECT, "--environment", ENVIRONMENT,
             "--kind", "live", "--name", "demo app (make run)"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        token = next((line.strip() for line in result.stdout.splitlines() if line.startswith("anvil_live_")), None)
        if self.stopping.is_set():  # Ctrl-C reached the command too
            raise KeyboardInterrupt
        if result.returncode != 0 or token is None:
            raise DevRunError(
                f"could not create a live token for {PROJECT} ({ENVIRONMENT}):\n{result.stderr or result.stdout}"
                "Was the demo data seeded (`anvil-forge demo`)?"
            )
        return token

    def _token_accepted(self, token: str) -> bool:
        return _status(self.forge_port, "/api/v1/live/releases", {"Authorization": f"Bearer {token}"}) == 200

    def connect(self, token: str) -> None:
        """``anvil connect`` for the demo app's directory: records the FORGE and token, pulls the prompts."""
        result = subprocess.run(
            [sys.executable, "-m", "anvil_client._cli", "connect", self.forge_url, "--path", str(self.app_dir)],
            env={**_without_anvil_client_settings(os.environ), "ANVIL_TOKEN": token},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if self.stopping.is_set():
            raise KeyboardInterrupt
        if result.returncode != 0:
            raise DevRunError(f"`anvil connect {self.forge_url}` failed:\n{result.stderr}{result.stdout}")

    def admin_secret(self) -> str:
        path = self.app_dir / "admin_secret"
        if path.exists():
            secret = path.read_text().strip()
            if len(secret) >= 16:
                return secret
        secret = secrets.token_urlsafe(18)
        path.touch(mode=0o600)
        path.write_text(secret + "\n")
        return secret

    def start_demo(self, secret: str) -> None:
        env = {
            **_without_anvil_client_settings(os.environ),
            "ANVIL_CONFIG": str(self.app_dir / "anvil.toml"),
            "ANVIL_ADMIN_SECRET": secret,
            "PYTHONUNBUFFERED": "1",
        }
        command = [sys.executable, str(self.demo_script), "--host", HOST, "--port", str(self.demo_port)]
        self._spawn("demo-app", command, env=env, cwd=self.app_dir)
        self._wait_healthy("demo-app", self.demo_port)

    def banner(self, secret: str) -> None:
        users = ", ".join(USERS)
        print(
            f"""
Anvil is running. Ctrl-C stops it.

  FORGE        {self.forge_url}/
               sign in as one of {users}; password: {DEMO_PASSWORD}
  Demo app     {self.demo_url}/
               the support bot's prompts, served from memory by anvil_client
  Admin page   {self.demo_url}/anvil/   (the demo app's LIVE client; secret: {secret})

Try it: version 2 of {PROJECT}/core is approved but not published. Publish it to {ENVIRONMENT}
(sign in as editor, or run `.venv/bin/anvil-forge publish {PROJECT}/core --version 2
--environment {ENVIRONMENT} --as editor` here) and watch the demo app change within a second.

Logs: {self.log_dir}/forge.log and {self.log_dir}/demo-app.log
""",
            flush=True,
        )

    def wait(self) -> int:
        """Until Ctrl-C / SIGTERM (exit 0) or until one server exits by itself (exit 1)."""
        while not self.stopping.wait(0.3):
            for name, process in self.processes.items():
                if process.poll() is not None:
                    print(f"\n{name} exited ({process.returncode}); its log ends with:\n{self._tail(name)}", flush=True)
                    return 1
        print("\nStopping the demo app and the FORGE...", flush=True)
        return 0

    # -- processes -----------------------------------------------------------------------------------------

    def _spawn(self, name: str, command: list[str], *, env: dict[str, str], cwd: Path | None = None) -> None:
        log = (self.log_dir / f"{name}.log").open("ab")
        # Own session: Ctrl-C reaches only this runner, which stops the servers in order.
        self.processes[name] = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def _wait_healthy(self, name: str, port: int) -> None:
        process = self.processes[name]
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and not self.stopping.is_set():
            if process.poll() is not None:
                raise DevRunError(f"{name} exited at start ({process.returncode}):\n{self._tail(name)}")
            if _status(port, "/healthz") == 200:
                return
            time.sleep(0.2)
        if self.stopping.is_set():
            raise KeyboardInterrupt
        raise DevRunError(f"{name} did not answer on port {port} within {START_TIMEOUT:.0f} s:\n{self._tail(name)}")

    def stop(self) -> None:
        """Stop the demo app, then the FORGE: SIGTERM, then SIGKILL after a grace period."""
        for name in ("demo-app", "forge"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _status(port: int, path: str, headers: dict[str, str] | None = None) -> int | None:
    """The HTTP status of a GET on this host's ``port``, or None when nothing answers."""
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request("GET", path, headers=headers or {})
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def _check_port_free(name: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no obstacle
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            raise DevRunError(
                f"port {port} ({name}) is in use ({exc.strerror}): is `make run` already running? Stop it, or "
                f"choose other ports: make run FORGE_PORT=8010 DEMO_PORT=8011"
            ) from exc


def _without_anvil_client_settings(environ: os._Environ[str] | dict[str, str]) -> dict[str, str]:
    """The environment minus the LIVE client's settings, so the demo app's anvil.toml is what counts."""
    names = ("ANVIL_FORGE_URL", "ANVIL_TOKEN", "ANVIL_CACHE_DIR", "ANVIL_MODE", "ANVIL_BOOTSTRAP", "ANVIL_CONFIG")
    return {key: value for key, value in environ.items() if key not in names}


def _demo_script() -> Path:
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        script = root / "demo" / "demo_app.py"
        if script.is_file():
            return script
    raise DevRunError("demo/demo_app.py was not found: run `make run` from the repository's root")


def main() -> int:
    data_dir = Path(os.environ.get("ANVIL_DATA_DIR") or Path.cwd() / "var").resolve()
    try:
        runner = DevRun(
            data_dir=data_dir,
            forge_port=int(os.environ.get("FORGE_PORT", "8000")),
            demo_port=int(os.environ.get("DEMO_PORT", "8001")),
            demo_script=_demo_script(),
        )
    except (DevRunError, ValueError) as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1

    def on_signal(signum: int, frame: object) -> None:
        runner.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        return runner.run()
    except DevRunError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        runner.stop()


if __name__ == "__main__":
    sys.exit(main())

"""Run a real FORGE (uvicorn, ``anvil-forge serve``) in another process on a free loopback port.

Used by the integration and browser tests. Each FORGE gets its own database: a copy of a migrated
template (a SQLite file copy, or ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL when ``DATABASE_URL``
points at PostgreSQL, as in the suite's PostgreSQL pass).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEMO_PASSWORD = "anvil-demo"
_TEMPLATE_CACHE: dict[str, str] = {}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_url() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else None


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _admin_execute(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(_with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(sql)


def base_env(data_dir: Path, database_url: str, public_url: str = "http://127.0.0.1:8000") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ANVIL_"))}
    env.update(
        {
            "DATABASE_URL": database_url,
            "ANVIL_DATA_DIR": str(data_dir),
            "SECRET_KEY": "integration-secret-key-" + "k" * 40,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DEBUG": "false",
            "ANVIL_COOKIE_SECURE": "false",
            "ANVIL_PUBLIC_URL": public_url,
            "ANVIL_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _forge_cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "anvil_forge.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"anvil-forge {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def _migrated_template(seed_demo: bool) -> str:
    """A migrated (and optionally demo-seeded) database to copy from, made once per test session."""
    key = f"demo={seed_demo}"
    if key in _TEMPLATE_CACHE:
        return _TEMPLATE_CACHE[key]
    pg = postgres_url()
    workdir = Path(tempfile.mkdtemp(prefix="anvil-template-"))
    if pg:
        name = f"anvil_tpl_{uuid.uuid4().hex[:10]}"
        _admin_execute(pg, f'CREATE DATABASE "{name}"')
        url = _with_database(pg, name)
        source = name
    else:
        source = str(workdir / "forge.sqlite3")
        url = f"sqlite:///{source}"
    env = base_env(workdir, url)
    _forge_cli(env, "manage", "migrate", "--no-input")
    if seed_demo:
        _forge_cli(env, "demo", "--password", DEMO_PASSWORD)
    if not pg:
        # Fold the WAL into the main file so a plain copy is complete.
        import sqlite3

        with contextlib.closing(sqlite3.connect(source)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("PRAGMA journal_mode=DELETE")
    _TEMPLATE_CACHE[key] = source
    return source


def drop_templates() -> None:
    pg = postgres_url()
    for source in _TEMPLATE_CACHE.values():
        if pg:
            with contextlib.suppress(Exception):
                _admin_execute(pg, f'DROP DATABASE IF EXISTS "{source}" WITH (FORCE)')
    _TEMPLATE_CACHE.clear()


def new_database(data_dir: Path, seed_demo: bool = True) -> str:
    """A fresh database for one FORGE, copied from the session's template; returns its URL."""
    source = _migrated_template(seed_demo)
    pg = postgres_url()
    if pg:
        name = f"anvil_it_{uuid.uuid4().hex[:10]}"
        _admin_execute(pg, f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
        return _with_database(pg, name)
    target = data_dir / "forge.sqlite3"
    shutil.copyfile(source, target)
    return f"sqlite:///{target}"


@dataclass
class ForgeProcess:
    """One FORGE server. ``start()``, ``stop()`` or ``kill()`` it; ``cli(...)`` runs ``anvil-forge``."""

    data_dir: Path
    database_url: str
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {**base_env(self.data_dir, self.database_url, self.url), **self.extra_env}

    @property
    def log_path(self) -> Path:
        return self.data_dir / "forge.log"

    def cli(self, *args: str, timeout: float = 60) -> str:
        return _forge_cli(self.env, *args, timeout=timeout).stdout

    def start(self, timeout: float = 30) -> ForgeProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "anvil_forge.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"FORGE exited at start:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        raise RuntimeError(f"FORGE did not answer within {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def drop_database(self) -> None:
        pg = postgres_url()
        if pg and self.database_url.startswith(("postgres://", "postgresql://")):
            name = urlsplit(self.database_url).path.lstrip("/")
            with contextlib.suppress(Exception):
                _admin_execute(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

"""Debian's nginx in front of two FORGE processes on one PostgreSQL database (docs/operations.md, "nginx").

The configuration tested here is the one the documentation shows (:func:`nginx_conf` writes it with this
test's ports and paths). nginx runs in the foreground with its pid file, logs and temporary files under the
test's directory, on a free loopback port. One FORGE is killed: every client's stream through nginx comes back
(to the other process) and takes the next publish.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.forge_process import free_port, postgres_url
from tests.integration.test_distribution_stream import make_token, publish
from tests.integration.test_rebalance import Client

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.postgres,
    pytest.mark.skipif(
        postgres_url() is None, reason="needs PostgreSQL: two FORGE processes share one database only there"
    ),
    pytest.mark.skipif(NGINX is None, reason="needs nginx (Debian: apt-get install nginx; .ci/run installs it)"),
]

CLIENTS = 10


def nginx_conf(*, port: int, upstreams: list[int], directory: Path) -> str:
    """The documented configuration (docs/operations.md, "nginx"), with this test's ports and paths."""
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;" for p in upstreams)
    return f"""
daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
worker_shutdown_timeout 10s;
events {{ worker_connections 1024; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;

    upstream anvil_forge {{
{servers}
        keepalive 32;
    }}

    server {{
        listen 127.0.0.1:{port};

        location = /api/v1/live/stream {{
            proxy_pass http://anvil_forge;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 60s;
            proxy_next_upstream error timeout http_503;
            proxy_next_upstream_tries 2;
        }}

        location / {{
            proxy_pass http://anvil_forge;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_next_upstream error timeout http_503;
            proxy_next_upstream_tries 2;
            client_max_body_size 10m;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, directory: Path, upstreams: list[int], port: int) -> None:
        self.directory, self.port = directory, port
        self.conf = directory / "nginx.conf"
        self.conf.write_text(nginx_conf(port=port, upstreams=upstreams, directory=directory))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        args = [NGINX, "-p", str(self.directory), "-c", str(self.conf)]
        checked = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                assert self.process.poll() is None, self.error_log()
                assert time.monotonic() < deadline, self.error_log()
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: as a reload or shutdown does
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


class Fixed:
    """The clients' only address: nginx."""

    def __init__(self, url: str) -> None:
        self.url = url

    def next(self) -> str:
        return self.url


@pytest.fixture
def nginx_factory(tmp_path):
    made: list[Nginx] = []

    def make(**kwargs) -> Nginx:
        directory = tmp_path / f"nginx{len(made)}"
        directory.mkdir()
        directory.chmod(0o755)
        made.append(Nginx(directory, **kwargs))
        return made[-1]

    yield make
    for nginx in made:
        nginx.stop()


def test_every_client_behind_nginx_takes_the_next_publish_after_one_forge_is_killed(make_forge, nginx_factory):
    port = free_port()
    env = {"ANVIL_PUBLIC_URL": f"http://127.0.0.1:{port}", "ANVIL_RELEASE_POLL_SECONDS": "60"}
    first = make_forge(env=env)
    second = make_forge(env=env, database_url=first.database_url)
    nginx = nginx_factory(upstreams=[first.port, second.port], port=port).start()
    token = make_token(first)

    clients = [Client(Fixed(nginx.url), token, first=nginx.url, retry_scale=1.0) for _ in range(CLIENTS)]
    for client in clients:
        client.start()
    try:
        deadline = time.monotonic() + 20
        while not all(client.versions == [1] and client.where for client in clients):
            assert time.monotonic() < deadline, [client.versions for client in clients]
            time.sleep(0.05)
        second.kill()
        killed = time.monotonic()
        published = publish(first, 2)
        deadline = published + 15
        while not all(client.versions[-1] == 2 for client in clients):
            assert time.monotonic() < deadline, [client.versions for client in clients]
            time.sleep(0.05)
        took = time.monotonic() - killed
        moved = sum(1 for client in clients if client.reconnects)
        print(f"every client took the publish {took:.1f} s after the kill; {moved} of {CLIENTS} came back")
        assert moved >= 1, "nginx sent no client to the killed process: the test proved nothing"
        assert all(client.versions.count(2) == 1 for client in clients)
        # nginx saw the killed process go and moved the new connections to the other one.
        assert "upstream prematurely closed" in nginx.error_log() or "Connection refused" in nginx.error_log()
    finally:
        for client in clients:
            client.stop()

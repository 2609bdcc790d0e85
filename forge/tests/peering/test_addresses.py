"""Where the FORGE may connect for a peer, and what it tells about a peer that fails.

By default only public addresses, checked on the address a name resolves to, at connect time, and the
connection goes to exactly that address. A peer's answer body is never repeated; a peer that cannot be reached
gives one fixed text, whatever the reason (closed, filtered, silent, not HTTP, no such name, TLS).
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import json
import socket
import threading
from collections.abc import Iterator

import pytest
from django.core.exceptions import ImproperlyConfigured

from anvil_forge.peering.client import PeerClient, PeerError
from anvil_forge.peering.config import address_problem, private_networks
from forge.tests.peering.stub_peer import page, reply
from tests.forge_process import free_port

TOKEN = "anvil_peer_" + "Addr3ss" * 6
SECRET = "db_password=hunter2"


def client(url: str, **kwargs) -> PeerClient:
    return PeerClient(url, TOKEN, name="b", **kwargs)


@pytest.fixture
def resolving_to(monkeypatch):
    """Make every host name resolve to the given addresses (one list per lookup; the last one repeats)."""

    def install(*answers: list[str]) -> list[str]:
        asked: list[str] = []
        real = socket.getaddrinfo
        remaining = list(answers)

        def fake(host, port, family=0, type=0, proto=0, flags=0):
            try:
                socket.inet_pton(socket.AF_INET6 if ":" in str(host) else socket.AF_INET, str(host))
                return real(host, port, family, type, proto, flags)  # an address literal: no lookup
            except OSError:
                pass
            asked.append(host)
            addresses = remaining.pop(0) if len(remaining) > 1 else remaining[0]
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, int(port), 0, 0)) if ":" in a
                else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, int(port)))
                for a in addresses
            ]

        monkeypatch.setattr(socket, "getaddrinfo", fake)
        return asked

    return install


# Non-public addresses: refused by default, without a request -------------------------------------------------


def test_a_loopback_peer_is_refused_by_default_and_nothing_is_sent(peer_server, settings):
    settings.ANVIL_PEER_PRIVATE_NETWORKS = []
    peer_server.json("/api/v1/peer/projects", page([]))
    with pytest.raises(PeerError, match="ANVIL_PEER_PRIVATE_NETWORKS") as caught:
        client(peer_server.url).projects()
    assert not caught.value.reachable
    assert peer_server.requests == []


def test_a_host_name_that_resolves_to_loopback_is_refused_too(peer_server, settings):
    settings.ANVIL_PEER_PRIVATE_NETWORKS = []
    port = peer_server.url.rsplit(":", 1)[1]
    with pytest.raises(PeerError, match="ANVIL_PEER_PRIVATE_NETWORKS"):
        client(f"http://localhost:{port}").projects()
    assert peer_server.requests == []


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.8.9.10", "10.0.0.8", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
        "0.0.0.0", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "192.0.2.10", "198.18.0.1",
        "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
        "2002:7f00:1::1", "64:ff9b::a9fe:a9fe",
    ],
)
def test_loopback_private_link_local_multicast_and_reserved_addresses_are_refused(settings, resolving_to, address):
    settings.ANVIL_PEER_PRIVATE_NETWORKS = []
    resolving_to([address])
    with pytest.raises(PeerError, match="ANVIL_PEER_PRIVATE_NETWORKS"):
        client("http://peer.example.com:8000", timeout=0.3).projects()


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:2800:220:1::1", "2002:5db8:d822::1"])
def test_public_addresses_are_allowed(settings, address):
    settings.ANVIL_PEER_PRIVATE_NETWORKS = []
    assert address_problem(ipaddress.ip_address(address)) is None


def test_a_wrong_private_networks_setting_stops_the_start():
    assert private_networks(["10.0.0.0/8", " 127.0.0.1 ", "fd00::/8"])
    with pytest.raises(ImproperlyConfigured, match=r"'10\.0\.0\.0/33' is not a network"):
        private_networks(["10.0.0.0/33"])


def test_a_name_with_one_internal_address_among_public_ones_is_refused(settings, resolving_to):
    settings.ANVIL_PEER_PRIVATE_NETWORKS = []
    resolving_to(["93.184.216.34", "10.0.0.8"])
    with pytest.raises(PeerError, match="ANVIL_PEER_PRIVATE_NETWORKS"):
        client("http://peer.example.com", timeout=0.3).projects()


def test_the_setting_allows_the_networks_it_names_and_only_those(peer_server, settings):
    peer_server.json("/api/v1/peer/projects", page([]))
    settings.ANVIL_PEER_PRIVATE_NETWORKS = ["10.0.0.0/8", "127.0.0.1/32"]
    assert client(peer_server.url).projects().total == 0
    settings.ANVIL_PEER_PRIVATE_NETWORKS = ["10.0.0.0/8"]
    with pytest.raises(PeerError, match="ANVIL_PEER_PRIVATE_NETWORKS"):
        client(peer_server.url).projects()
    assert len(peer_server.requests) == 1


def test_the_connection_goes_to_the_address_checked_not_to_a_second_lookup(peer_server, settings, resolving_to):
    """DNS rebinding: the first lookup answers an allowed address, any later one another. Only one may count."""
    settings.ANVIL_PEER_PRIVATE_NETWORKS = ["127.0.0.1/32"]
    asked = resolving_to(["127.0.0.1"], ["127.0.0.2"])
    peer_server.json("/api/v1/peer/projects", page([]))
    port = peer_server.url.rsplit(":", 1)[1]
    assert client(f"http://peer.example.com:{port}").projects().total == 0
    assert asked == ["peer.example.com"]  # looked up once, and connected there
    assert peer_server.requests[0]["host"] == f"peer.example.com:{port}"  # the peer still sees its own name


def test_a_redirect_to_an_internal_address_is_not_followed(peer_server):
    peer_server.routes["/api/v1/peer/projects"] = reply(
        b"", status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}
    )
    with pytest.raises(PeerError, match="redirect") as caught:
        client(peer_server.url).projects()
    assert "169.254" not in caught.value.message
    assert len(peer_server.requests) == 1


# A peer's answer body is never shown ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, body, content_type",
    [
        (500, json.dumps({"error": f"connection failed: {SECRET}"}).encode(), "application/json"),
        (503, json.dumps({"error": SECRET}).encode(), "application/json"),
        (403, f"<html><body>{SECRET}</body></html>".encode(), "text/html"),
        (418, SECRET.encode(), "text/plain"),
        (400, json.dumps({"error": SECRET, "detail": SECRET}).encode(), "application/json"),
    ],
)
def test_an_error_answer_is_shown_as_its_status_and_a_fixed_reason_never_its_body(
    peer_server, status, body, content_type
):
    peer_server.routes["/api/v1/peer/projects"] = reply(body, status=status, content_type=content_type)
    with pytest.raises(PeerError) as caught:
        client(peer_server.url).projects()
    assert str(status) in caught.value.message
    assert "hunter2" not in caught.value.message and "hunter2" not in str(caught.value.extra)


def test_a_404_for_the_projects_list_means_no_peer_api_there(peer_server):
    """Every peer FORGE lists its projects: a 404 there is not "reachable, token accepted"."""
    with pytest.raises(PeerError, match="404") as caught:
        client(peer_server.url).projects()
    assert caught.value.kind not in ("not_found",)


# One text for every way of not reaching a peer -------------------------------------------------------------


@contextlib.contextmanager
def _listener(behaviour: str) -> Iterator[int]:
    """A port on loopback: ``silent`` accepts and never answers; ``banner`` answers like an SSH server;
    ``filtered`` drops new connections (its backlog is full), as a firewall that drops packets does."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            held.append(connection)
            if behaviour == "banner":
                with contextlib.suppress(OSError):
                    connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
                    connection.close()

    thread = None
    if behaviour == "filtered":
        filler = socket.create_connection(("127.0.0.1", port))  # fills the backlog of 0: the next SYN is dropped
        held.append(filler)
    else:
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
    try:
        yield port
    finally:
        stop.set()
        if thread:
            thread.join()
        for connection in held:
            connection.close()
        server.close()


@contextlib.contextmanager
def _plain_http() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            reply(b"{}")(self)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_closed_filtered_silent_and_non_http_ports_are_told_apart_by_nothing(settings):
    settings.ANVIL_PEER_ALLOWED_HOSTS = ["*"]
    failures: dict[str, PeerError] = {}

    def attempt(label: str, url: str) -> None:
        with pytest.raises(PeerError) as caught:
            client(url, timeout=0.5).projects()
        failures[label] = caught.value

    attempt("closed", f"http://127.0.0.1:{free_port()}")
    for behaviour in ("filtered", "silent", "banner"):
        with _listener(behaviour) as port:
            attempt(behaviour, f"http://127.0.0.1:{port}")
    with _plain_http() as port:
        attempt("tls to a plain port", f"https://127.0.0.1:{port}")
    attempt("no such name", "http://no-such-peer.invalid:8000")
    texts = {label: error.message for label, error in failures.items()}
    assert len(set(texts.values())) == 1, texts
    assert "could not reach the peer" in texts["closed"].lower()
    assert {error.kind for error in failures.values()} == {"unreachable"}

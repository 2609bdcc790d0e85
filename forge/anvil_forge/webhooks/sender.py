"""One HTTP POST of a delivery, under the peers' address rules (``peering.config``, ``peering.client``).

The host is checked against ``ANVIL_PEER_ALLOWED_HOSTS``, resolved once, every address checked
(public only unless ``ANVIL_PEER_PRIVATE_NETWORKS`` names its network) and the connection made to exactly
the addresses checked, so a second DNS answer cannot swap in an internal address. No redirect is followed;
the whole request has a deadline; only the status code is kept of the answer.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from anvil_forge.peering.client import _connect
from anvil_forge.peering.config import address_problem, host_problem

USER_AGENT = "anvil-forge-webhook/1"


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int | None  # the receiver's status code, None when there was no answer
    error: str = ""  # why it failed, for the delivery log (never the receiver's body)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> Outcome:
    if problem := url_problem(url):
        return Outcome(None, f"refused: {problem}")
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    deadline = time.monotonic() + timeout
    try:
        addresses = _addresses(host, port)
    except _Refused as exc:
        return Outcome(None, str(exc))
    except OSError as exc:
        return Outcome(None, f"could not resolve {host}: {exc.strerror or exc}")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    connection._create_connection = lambda _address, timeout, source=None: _connect(  # type: ignore[attr-defined]
        addresses, timeout, deadline
    )
    try:
        connection.request("POST", target, body=body, headers={**headers, "User-Agent": USER_AGENT})
        response = connection.getresponse()
        response.read(64 * 1024)  # a little of the body, so keep-alive receivers are not cut off mid-answer
        return Outcome(response.status, "" if 200 <= response.status < 300 else f"answered {response.status}")
    except (OSError, http.client.HTTPException) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) or type(exc).__name__)
        return Outcome(None, f"no answer: {reason}"[:300])
    finally:
        connection.close()


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook's URL, or ``None``: http(s), a host the peers' rules allow, no fragment or
    credentials. (Its addresses are checked at each delivery, when the name is resolved.)"""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "the URL must start with http:// or https://"
    if not parts.hostname:
        return "the URL has no host"
    if parts.fragment or parts.username or parts.password:
        return "the URL must not carry a #fragment or user:password@"
    if problem := host_problem(parts.hostname):
        return f"the URL {problem}"
    return None


class _Refused(Exception):
    pass


def _addresses(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[tuple[int, tuple[Any, ...]]] = []
    for family, _type, _proto, _name, sockaddr in found:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if problem := address_problem(address):  # one refused address refuses the name
            raise _Refused(f"refused: {host} {problem}")
        addresses.append((family, sockaddr))
    if not addresses:
        raise OSError(f"{host} has no IPv4 or IPv6 address")
    return addresses

"""The HTTP client one FORGE uses to read another's peer API (``/api/v1/peer/``).

A peer is someone else's server: it may be slow, down, answer garbage, or answer far too much. Every call
here has a total deadline (not only a per-read timeout, so a peer dripping one byte a second cannot hold a
page), a size limit, follows no redirect (the token goes only to the URL configured), and turns every
failure into :class:`PeerError` with a message a person can act on. Bundles are verified with
``anvil_client.bundle.load_bundle``, the same check a LIVE client makes.

A peer URL is also a way into the FORGE's own network: the host is resolved at each request, every address
checked (``config.address_problem``: public only, unless ``ANVIL_PEER_PRIVATE_NETWORKS`` allows), and the
connection made to exactly the addresses checked. What a failing peer sent is never repeated, and every way of
not reaching it reads the same (a page must not serve as a port scanner).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from django.conf import settings

from anvil_client._exceptions import BundleDigestError, BundleError, BundleSchemaError
from anvil_client.bundle import SLUG_PATTERN, Bundle, load_bundle
from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.peering.config import address_problem, host_problem

logger = logging.getLogger("anvil_forge.peering")

USER_AGENT = "anvil-forge-peer/1"
PROJECTS = "/api/v1/peer/projects"
_CHUNK = 64 * 1024


class PeerError(ApplicationError):
    """A peer could not be read. ``kind`` says why, for the health badge:

    ``unreachable`` (refused by this FORGE's settings, or not reached: connection refused, no answer in time,
    not HTTP, DNS, TLS, all with one text), ``timeout`` (an answer begun but not finished in time),
    ``token_refused`` (401), ``not_found`` (404), ``too_large``, ``garbage`` (not the peer API's JSON, or a bundle
    that fails verification), ``http`` (other statuses, shown as the status and a fixed reason, never the body),
    ``limited`` (the page-view read budget is spent: ``peering.throttle``). The gateway answering 502 for a peer
    that failed is the caller's choice.
    """

    status_code = 502

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message, {"kind": kind})
        self.kind = kind

    @property
    def reachable(self) -> bool:
        return self.kind not in ("unreachable", "timeout")


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a paginated peer API list."""

    items: list[dict[str, Any]]
    page: int
    per_page: int
    total: int
    next_page: int | None


class PeerClient:
    """Reads one peer. ``timeout`` bounds each whole request; ``max_bytes`` bounds each answer's body."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        name: str = "",
        timeout: float | None = None,
        max_bytes: int | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PeerError(f"Peer {name or url}: {url!r} is not an http:// or https:// URL.", kind="unreachable")
        self.name = name or parts.hostname
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.base_path = parts.path.rstrip("/")
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = float(timeout if timeout is not None else settings.ANVIL_PEER_TIMEOUT_SECONDS)
        self.max_bytes = int(max_bytes if max_bytes is not None else settings.ANVIL_PEER_MAX_BYTES)

    def __repr__(self) -> str:  # never the token
        return f"PeerClient({self.name!r}, {self.url!r})"

    # The peer API, one method per endpoint.

    def projects(self, *, page: int = 1, per_page: int = 50) -> Page:
        return self._page(PROJECTS, page, per_page, slugs=("organisation", "project"))

    def sets(self, organisation: str, project: str, *, page: int = 1, per_page: int = 50) -> Page:
        path = f"/api/v1/peer/projects/{_seg(organisation)}/{_seg(project)}/sets"
        return self._page(path, page, per_page, slugs=("set",), numbers=("latest_version",))

    def versions(self, organisation: str, project: str, set_slug: str, *, page: int = 1, per_page: int = 50) -> Page:
        path = f"/api/v1/peer/projects/{_seg(organisation)}/{_seg(project)}/sets/{_seg(set_slug)}/versions"
        return self._page(path, page, per_page, numbers=("version",))

    def all_versions(self, organisation: str, project: str, set_slug: str, *, limit: int = 500) -> list[dict]:
        """Every approved version (newest first), following pages up to ``limit`` items."""
        items: list[dict[str, Any]] = []
        page: int | None = 1
        while page is not None and len(items) < limit:
            result = self.versions(organisation, project, set_slug, page=page, per_page=100)
            items.extend(result.items)
            page = result.next_page if result.next_page and result.next_page > page else None
        return items[:limit]

    def bundle(self, organisation: str, project: str, set_slug: str, version: int) -> Bundle:
        """Version ``version`` of a set as a verified ``anvil.bundle/1``; refuses one for anything else."""
        path = (
            f"/api/v1/peer/projects/{_seg(organisation)}/{_seg(project)}/sets/{_seg(set_slug)}"
            f"/versions/{int(version)}"
        )
        body = self._get(path)
        try:
            bundle = load_bundle(body)
        except BundleError as exc:  # a fixed reason: the error's own text may quote what the peer sent
            reason = (
                "its digest does not match its content" if isinstance(exc, BundleDigestError)
                else "a field is missing or malformed" if isinstance(exc, BundleSchemaError)
                else "it is not an anvil.bundle/1 bundle"
            )
            message = f"Peer {self.name} sent a bundle that failed verification: {reason}."
            raise PeerError(message, kind="garbage") from exc
        expected = (organisation, project, set_slug, int(version))
        if (bundle.organisation, bundle.project, bundle.set, bundle.version) != expected:
            raise PeerError(
                f"Peer {self.name} sent the bundle of another set or version when asked for "
                f"{expected[0]}/{expected[1]}/{expected[2]} v{expected[3]}; refused.",
                kind="garbage",
            )
        if bundle.approval != "approved":
            raise PeerError(f"Peer {self.name} sent a version that is not approved; refused.", kind="garbage")
        return bundle

    # Transport.

    def _page(
        self, path: str, page: int, per_page: int, *, slugs: tuple[str, ...] = (), numbers: tuple[str, ...] = ()
    ) -> Page:
        data = self._get_json(path, {"page": page, "per_page": per_page})
        if not isinstance(data, dict):
            raise PeerError(f"Peer {self.name} answered {path} with something that is not a page.", kind="garbage")
        items, total = data.get("items"), data.get("total")
        number, size, next_page = data.get("page"), data.get("per_page"), data.get("next_page")
        if (
            not isinstance(items, list)
            or not all(isinstance(item, dict) for item in items)
            or not _whole(total)
            or not _whole(number)
            or not _whole(size)
            or not (next_page is None or _whole(next_page))
        ):
            raise PeerError(
                f"Peer {self.name} answered {path} with a page that is not the peer API's "
                "(expected items, page, per_page, total, next_page).",
                kind="garbage",
            )
        for item in items:  # what pages link to must be what links can carry
            bad = next((key for key in slugs if not _slug(item.get(key))), None)
            bad = bad or next((key for key in numbers if not _whole(item.get(key)) or item[key] < 1), None)
            if bad:
                raise PeerError(
                    f"Peer {self.name} answered {path} with an item whose {bad} is missing or malformed.",
                    kind="garbage",
                )
        return Page(items=items, page=number, per_page=size, total=total, next_page=next_page)

    def _get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        body = self._get(path, params)
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            message = f"Peer {self.name} answered {path} with something that is not JSON."
            raise PeerError(message, kind="garbage") from exc

    def _get(self, path: str, params: dict[str, Any] | None = None) -> bytes:
        # Checked at each request, not only when the peer was added: the settings and the DNS may have changed.
        if problem := host_problem(self.host):
            raise PeerError(f"Peer {self.name}: its URL {problem}; the FORGE does not connect.", kind="unreachable")
        target = self.base_path + path + (f"?{urlencode(params)}" if params else "")
        deadline = time.monotonic() + self.timeout
        port = self.port or (443 if self.scheme == "https" else 80)
        connection: http.client.HTTPConnection
        if self.scheme == "https":
            connection = http.client.HTTPSConnection(
                self.host, port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(self.host, port, timeout=self.timeout)
        answered = False
        try:
            # The name is looked up once and checked; the connection goes to exactly the addresses checked (TLS
            # still verifies the certificate against the name), so a second lookup cannot swap in another.
            addresses = self._addresses(port)
            connection._create_connection = lambda _address, timeout, source=None: _connect(  # type: ignore[attr-defined]
                addresses, timeout, deadline
            )
            connection.request(
                "GET",
                target,
                headers={
                    "Authorization": f"Bearer {self._token}",
                    "Accept": "application/json",
                    "User-Agent": USER_AGENT,
                },
            )
            self._remaining(connection, deadline)
            response = connection.getresponse()
            answered = True
            length = response.getheader("Content-Length")
            if length and length.isdigit() and int(length) > self.max_bytes:
                raise self._too_large(path)
            chunks: list[bytes] = []
            size = 0
            while True:
                self._remaining(connection, deadline)
                chunk = response.read1(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_bytes:
                    raise self._too_large(path)
                chunks.append(chunk)
            body = b"".join(chunks)
        except PeerError as exc:
            if exc.kind == "timeout" and not answered:
                raise self._unreachable(exc) from exc
            raise
        except (OSError, http.client.HTTPException) as exc:  # timeouts, refusals, DNS, TLS, not HTTP
            if not answered:
                raise self._unreachable(exc) from exc
            if isinstance(exc, TimeoutError):
                raise PeerError(f"Peer {self.name} did not answer within {self.timeout:g} s.", kind="timeout") from exc
            raise PeerError(f"Peer {self.name} broke off its answer to {path}.", kind="garbage") from exc
        finally:
            connection.close()
        self._check_status(response.status, path)
        return body

    def _addresses(self, port: int) -> list[tuple[int, tuple[Any, ...]]]:
        """The addresses ``self.host`` resolves to, each allowed (else :class:`PeerError`): (family, sockaddr)."""
        found = socket.getaddrinfo(self.host, port, type=socket.SOCK_STREAM)
        addresses: list[tuple[int, tuple[Any, ...]]] = []
        for family, _type, _proto, _name, sockaddr in found:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if problem := address_problem(address):  # one refused address refuses the name: no lottery
                logger.warning("peer %s: %s resolves to %s, which it refuses", self.name, self.host, address)
                raise PeerError(f"Peer {self.name}: its host {problem}.", kind="unreachable")
            addresses.append((family, sockaddr))
        if not addresses:
            raise OSError(f"{self.host} has no IPv4 or IPv6 address")
        return addresses

    def _unreachable(self, cause: BaseException) -> PeerError:
        """One text for every way of not reaching a peer: a closed, filtered or silent port, a service that is not
        HTTP, a name that does not resolve and a failed TLS handshake must not be told apart (the reason is
        logged for the operator)."""
        logger.info("peer %s: could not reach %s: %s", self.name, self.url, _reason(cause))
        return PeerError(
            f"Could not reach the peer {self.name}: no connection, no answer within {self.timeout:g} s, or no HTTP "
            "answer. Check its URL and that it is running.",
            kind="unreachable",
        )

    def _remaining(self, connection: http.client.HTTPConnection, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PeerError(f"Peer {self.name} did not answer within {self.timeout:g} s.", kind="timeout")
        if connection.sock is not None:
            connection.sock.settimeout(remaining)

    def _too_large(self, path: str) -> PeerError:
        return PeerError(
            f"Peer {self.name} answered {path} with more than {self.max_bytes // 1024} KB; refused.", kind="too_large"
        )

    def _check_status(self, status: int, path: str) -> None:
        """Refuse an answer that is not a success with its status and a fixed reason: never the peer's body."""
        if 200 <= status < 300:
            return
        if status == 401:
            raise PeerError(
                f"Peer {self.name} refused the token (401): it is wrong, expired or revoked. "
                "Ask the peer FORGE's admin for a new peer token and replace it here.",
                kind="token_refused",
            )
        if status == 404 and path == PROJECTS:  # every peer FORGE lists the token's projects
            raise PeerError(
                f"Peer {self.name} answered 404 where a FORGE lists its projects to peers: its URL is not an Anvil "
                "FORGE (or not its base address).",
                kind="http",
            )
        if status == 404:
            raise PeerError(f"Peer {self.name} has no {path.removeprefix('/api/v1/peer/')} (404).", kind="not_found")
        if 300 <= status < 400:
            raise PeerError(
                f"Peer {self.name} answered with a redirect ({status}), which the FORGE does not follow; "
                f"check its URL ({self.url}).",
                kind="http",
            )
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "an unknown status"
        kind = "server error" if status >= 500 else "refused"
        raise PeerError(f"Peer {self.name} answered {status} ({reason}): {kind}.", kind="http")


def _connect(addresses: list[tuple[int, tuple[Any, ...]]], timeout: float | None, deadline: float) -> socket.socket:
    """A connection to the first of ``addresses`` that answers, within the request's deadline."""
    error: OSError | None = None
    for family, sockaddr in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(min(remaining, timeout) if timeout is not None else remaining)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or TimeoutError("no time left to connect")


def _reason(cause: BaseException) -> str:
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(cause) or type(cause).__name__


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _slug(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 64 and SLUG_PATTERN.match(value) is not None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0

"""Peers from configuration (``ANVIL_PEERS``, a JSON list of ``{"name", "url", "token_env"}``), and where the
FORGE may connect for a peer (``ANVIL_PEER_ALLOWED_HOSTS`` for names, ``ANVIL_PEER_PRIVATE_NETWORKS`` for addresses).

The token itself never appears in the setting: ``token_env`` names the environment variable that holds it,
read each time the peer is used. Example::

    ANVIL_PEERS='[{"name": "eu", "url": "https://forge.eu.example.com", "token_env": "ANVIL_PEER_EU_TOKEN"}]'
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http.request import validate_host

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ConfiguredPeer:
    name: str
    url: str
    token_env: str

    def token(self) -> str:
        return os.environ.get(self.token_env, "").strip()


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a peer's base URL, or ``None`` when it can."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"{url!r} is not an http:// or https:// URL"
    if not parts.hostname:
        return f"{url!r} has no host"
    if parts.query or parts.fragment:
        return f"{url!r} must not have a query or fragment"
    return host_problem(parts.hostname)


def host_problem(host: str) -> str | None:
    """Why the FORGE may not connect to ``host`` (``ANVIL_PEER_ALLOWED_HOSTS``), or ``None`` when it may.

    The patterns are Django's ``ALLOWED_HOSTS`` patterns, matched by Django's own ``validate_host``.
    """
    if validate_host(host.lower(), settings.ANVIL_PEER_ALLOWED_HOSTS):
        return None
    return f"names host {host!r}, which is not in ANVIL_PEER_ALLOWED_HOSTS"


# The IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64, RFC 6052 and 8215).
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def private_networks(raw: list[str] | None = None) -> tuple[IPNetwork, ...]:
    """``ANVIL_PEER_PRIVATE_NETWORKS`` parsed; :class:`ImproperlyConfigured` naming an entry that is no network."""
    entries = getattr(settings, "ANVIL_PEER_PRIVATE_NETWORKS", []) if raw is None else raw
    networks: list[IPNetwork] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"ANVIL_PEER_PRIVATE_NETWORKS: {entry!r} is not a network (write 10.20.0.0/16 or 127.0.0.1/32)."
            ) from exc
    return tuple(networks)


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is a public unicast address: not loopback, private, shared (CGNAT), link-local,
    multicast, reserved, unspecified or documentation, nor an IPv6 address that carries such an IPv4 one
    (IPv4-mapped, 6to4, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and any(address in network for network in _NAT64):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded) and (address.ipv4_mapped is not None or address.is_global)
    return address.is_global and not (
        address.is_multicast or address.is_private or address.is_loopback or address.is_link_local
        or address.is_reserved or address.is_unspecified
    )


def address_problem(address: IPAddress) -> str | None:
    """Why the FORGE may not connect to ``address`` for a peer, or ``None`` when it may.

    Public addresses may be connected to; others only when ``ANVIL_PEER_PRIVATE_NETWORKS`` names their network.
    """
    if is_public(address) or any(address in network for network in private_networks()):
        return None
    return (
        "is at a loopback, private, link-local, multicast or reserved address, which the FORGE does not connect to "
        "unless ANVIL_PEER_PRIVATE_NETWORKS names its network"
    )


def configured_peers(raw: str | None = None) -> tuple[ConfiguredPeer, ...]:
    """Parse ``ANVIL_PEERS``; :class:`ImproperlyConfigured` naming the problem when it is wrong."""
    raw = getattr(settings, "ANVIL_PEERS", "") if raw is None else raw
    if not raw or not raw.strip():
        return ()
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"ANVIL_PEERS is not valid JSON: {exc}") from exc
    if not isinstance(entries, list):
        raise ImproperlyConfigured("ANVIL_PEERS must be a JSON list of {name, url, token_env} objects.")
    peers: list[ConfiguredPeer] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"ANVIL_PEERS[{index}]"
        if not isinstance(entry, dict):
            raise ImproperlyConfigured(f"{where} must be an object with name, url and token_env.")
        unknown = sorted(set(entry) - {"name", "url", "token_env"})
        if unknown:
            hint = " (put the token in an environment variable and name it in token_env)" if "token" in unknown else ""
            raise ImproperlyConfigured(f"{where} has an unknown key {unknown[0]!r}{hint}.")
        name, url, token_env = entry.get("name"), entry.get("url"), entry.get("token_env")
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise ImproperlyConfigured(f"{where}.name {name!r} must be lowercase letters, digits, - or _.")
        if name in seen:
            raise ImproperlyConfigured(f"{where}.name {name!r} is used twice.")
        seen.add(name)
        if not isinstance(url, str) or (problem := url_problem(url)):
            raise ImproperlyConfigured(f"{where}.url: {problem if isinstance(url, str) else 'must be a string'}.")
        if not isinstance(token_env, str) or not ENV_NAME_PATTERN.match(token_env):
            raise ImproperlyConfigured(f"{where}.token_env must name an environment variable.")
        peers.append(ConfiguredPeer(name=name, url=url.rstrip("/"), token_env=token_env))
    return tuple(peers)

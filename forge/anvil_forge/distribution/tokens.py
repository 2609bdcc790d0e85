"""ACCESS_TOKEN material: how a token looks, how it is hashed, and how guessing is slowed down.

A token is ``anvil_<kind>_`` followed by 43 URL-safe characters (32 random bytes). The FORGE keeps only
its sha256 hash and a readable prefix (``anvil_live_Xy12ab``: the kind and six characters), which is what
lists and logs show. Nothing here touches the database; :mod:`anvil_forge.distribution.services` does.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

TOKEN_RANDOM_BYTES = 32
PREFIX_RANDOM_CHARS = 6
KINDS = ("live", "peer")
MAX_TOKEN_LENGTH = 128
_TOKEN_PATTERN = re.compile(r"^anvil_(live|peer)_[A-Za-z0-9_-]{43,100}$")
_PRINTABLE_START = re.compile(r"^[A-Za-z0-9_-]{0,24}")
# Ten years: "never expires" is a token without expiry, so nothing needs more (and far more overflows datetime).
MAX_EXPIRY_DAYS = 3650


@dataclass(frozen=True, slots=True)
class NewToken:
    raw: str  # shown once, never stored
    prefix: str
    token_hash: str


def token_generate(kind: str) -> NewToken:
    """A fresh random token of ``kind`` (``live`` or ``peer``) with its prefix and hash."""
    if kind not in KINDS:
        raise ValueError(f"unknown token kind {kind!r}; expected one of {', '.join(KINDS)}")
    start = f"anvil_{kind}_"
    raw = start + secrets.token_urlsafe(TOKEN_RANDOM_BYTES)
    return NewToken(raw=raw, prefix=raw[: len(start) + PREFIX_RANDOM_CHARS], token_hash=token_hash(raw))


def token_hash(raw: str) -> str:
    """The sha256 hex digest the FORGE stores and looks tokens up by."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def token_well_formed(raw: str) -> bool:
    """Whether ``raw`` has the shape of an Anvil token (cheap check before any database work)."""
    return len(raw) <= MAX_TOKEN_LENGTH and _TOKEN_PATTERN.match(raw) is not None


def expiry_after(days: int, *, now: datetime) -> datetime:
    """When a token made at ``now`` that lives ``days`` days expires; ValueError unless 1 <= days <= MAX_EXPIRY_DAYS."""
    if not 1 <= days <= MAX_EXPIRY_DAYS:
        raise ValueError(f"a token expires after 1 to {MAX_EXPIRY_DAYS} days, not {days}")
    return now + timedelta(days=days)


def loggable_prefix(raw: str) -> str:
    """What may be written to a log about a presented token: at most its readable prefix, never the secret."""
    start = _PRINTABLE_START.match(raw or "")
    text = start.group(0) if start else ""
    return text[: len("anvil_live_") + PREFIX_RANDOM_CHARS] or "(unreadable)"


def bearer_token(authorization: str | None) -> str | None:
    """The token in an ``Authorization: Bearer <token>`` header value, or ``None``."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class FailureLimiter:
    """Slows down token guessing: after ``limit`` failures from one address within ``window`` seconds,
    that address is refused (429) until its oldest failure leaves the window.

    In-process and in memory: each FORGE process counts on its own, which bounds a guesser per process;
    the address table is bounded so a flood of addresses cannot grow it without limit.
    """

    def __init__(self, *, limit: int = 10, window: float = 60.0, max_addresses: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str, now: float | None = None) -> int:
        """Seconds the address must wait before trying again; 0 when it may try now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            failures = self._failures.get(address)
            if not failures:
                return 0
            self._expire(failures, now)
            if len(failures) < self.limit:
                if not failures:
                    del self._failures[address]
                return 0
            return max(1, int(failures[0] + self.window - now + 0.999))

    def record_failure(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            failures = self._failures.get(address)
            if failures is None:
                if len(self._failures) >= self.max_addresses:
                    self._prune(now)
                failures = self._failures[address] = deque(maxlen=self.limit)
            self._expire(failures, now)
            failures.append(now)

    def reset(self) -> None:
        with self._lock:
            self._failures.clear()

    def _expire(self, failures: deque[float], now: float) -> None:
        while failures and failures[0] <= now - self.window:
            failures.popleft()

    def _prune(self, now: float) -> None:
        for address in list(self._failures):
            self._expire(self._failures[address], now)
            if not self._failures[address]:
                del self._failures[address]
        while len(self._failures) >= self.max_addresses:  # still full: forget the oldest entries
            del self._failures[next(iter(self._failures))]


# One per process, shared by the Django API views and the Starlette stream endpoint.
failure_limiter = FailureLimiter()

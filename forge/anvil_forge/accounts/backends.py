"""Sign-in with Django's ModelBackend, slowed down against password guessing.

After ``ANVIL_LOGIN_MAX_FAILURES`` failed sign-ins (default 5) within ``ANVIL_LOGIN_WINDOW_SECONDS``
(default 300) for one username, or from one client address, further attempts for that username or
from that address are refused without checking the password until the window passes. A success clears
the username's count. Counters live in Django's cache (per process with the default local-memory cache;
point ``CACHES`` at a shared cache when several FORGE processes serve sign-ins).

A small subclass rather than a library (django-axes, django-ratelimit): the rule is a dozen lines, needs
no new tables or middleware, and sits exactly where the password is checked.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

logger = logging.getLogger(__name__)


class LoginRateLimited(PermissionDenied):
    """Too many failed sign-ins; Django's ``authenticate`` stops at this and returns ``None``."""


def _max_failures() -> int:
    return int(getattr(settings, "ANVIL_LOGIN_MAX_FAILURES", 5))


def _window() -> int:
    return int(getattr(settings, "ANVIL_LOGIN_WINDOW_SECONDS", 300))


def _keys(request: HttpRequest | None, username: str | None) -> list[str]:
    keys = []
    if username:
        digest = hashlib.sha256(username.strip().lower().encode("utf-8")).hexdigest()[:32]
        keys.append(f"anvil:login-fail:user:{digest}")
    address = client_address(request)
    if address:
        keys.append(f"anvil:login-fail:ip:{address}")
    return keys


def client_address(request: HttpRequest | None) -> str | None:
    """The client's address as the ASGI server saw it (uvicorn applies trusted proxy headers itself)."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def login_is_limited(request: HttpRequest | None, username: str | None) -> bool:
    """Whether sign-ins for ``username`` or from this request's address are currently refused."""
    limit = _max_failures()
    return any((cache.get(key) or 0) >= limit for key in _keys(request, username))


def record_login_failure(request: HttpRequest | None, username: str | None) -> None:
    window = _window()
    for key in _keys(request, username):
        if not cache.add(key, 1, timeout=window):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=window)


def clear_login_failures(username: str | None) -> None:
    for key in _keys(None, username):
        cache.delete(key)


class RateLimitedModelBackend(ModelBackend):
    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        if username is None:
            username = kwargs.get(self._username_field())
        if login_is_limited(request, username):
            logger.warning(
                "sign-in refused: too many failures for username %r or address %s", username, client_address(request)
            )
            raise LoginRateLimited("Too many failed sign-ins. Wait a few minutes and try again.")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            record_login_failure(request, username)
        else:
            clear_login_failures(username)
        return user

    @staticmethod
    def _username_field() -> str:
        from django.contrib.auth import get_user_model

        return get_user_model().USERNAME_FIELD

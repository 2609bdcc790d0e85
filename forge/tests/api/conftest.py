"""Management API tests: a client that sends a personal API key, and keys made through the real service."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from anvil_forge.accounts.permissions import SystemActor
from anvil_forge.api.keys import api_key_create
from anvil_forge.distribution.tokens import failure_limiter


class KeyClient:
    """JSON requests to ``/api/v1/manage/`` with ``Authorization: Bearer <key>``."""

    def __init__(self, raw: str | None) -> None:
        self.raw = raw
        self.client = Client()

    def _headers(self) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.raw}"} if self.raw else {}

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get("/api/v1/manage/" + path, params, **self._headers())

    def send(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body if body is not None else {})
        call = getattr(self.client, method.lower())
        return call("/api/v1/manage/" + path, data, content_type="application/json", **self._headers())

    def post(self, path: str, body: Any = None) -> Any:
        return self.send("POST", path, body)

    def patch(self, path: str, body: Any = None) -> Any:
        return self.send("PATCH", path, body)


@pytest.fixture(autouse=True)
def _no_failure_limit():
    failure_limiter.reset()
    yield
    failure_limiter.reset()


@pytest.fixture
def key_for(db) -> Callable[..., KeyClient]:
    """``key_for(user, read_only=False, organisation=None, expires_in_days=None)``: a client with a new key."""

    def make(user: Any, **options: Any) -> KeyClient:
        made = api_key_create(actor=SystemActor("tests"), user=user, name="test key", **options)
        client = KeyClient(made.raw)
        client.key = made.key  # type: ignore[attr-defined]
        return client

    return make

"""Fixtures for the distribution tests: a published set and a live token for its production environment."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.test import Client

from anvil_forge.distribution.bundles import bundle_cache
from anvil_forge.distribution.models import AccessToken, Release
from anvil_forge.distribution.services import token_create
from anvil_forge.distribution.tokens import failure_limiter
from forge.tests import factories


@dataclass
class Live:
    """A project with a set whose version 1 is live in production, and a live token for production."""

    team: factories.Team
    release: Release
    token: AccessToken
    raw: str

    @property
    def project(self):
        return self.release.prompt_set.project

    @property
    def prompt_set(self):
        return self.release.prompt_set

    def client(self, raw: str | None = None) -> Client:
        return Client(HTTP_AUTHORIZATION=f"Bearer {raw or self.raw}")


@pytest.fixture(autouse=True)
def _fresh_process_state():
    failure_limiter.reset()
    bundle_cache.clear()
    yield
    failure_limiter.reset()


@pytest.fixture
def live(team, project, prompt_set) -> Live:
    version = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    release = factories.make_release(version, actor=team.editor)
    token, raw = token_create(
        actor=team.admin,
        project=project,
        environment=factories.environment(project),
        kind="live",
        name="web servers",
    )
    return Live(team=team, release=release, token=token, raw=raw)

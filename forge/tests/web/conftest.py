"""Web tests use the shared fixtures (``team``, ``other_team``, ``project``, ``prompt_set``) plus these."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.fixture
def as_user(db):
    """``as_user(user)``: a test client signed in as ``user`` (a fresh client each call)."""

    def sign_in(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return sign_in


@pytest.fixture
def urls(team, project, prompt_set):
    """The main page addresses of ``prompt_set``."""
    org = team.organisation.slug
    base = f"/o/{org}/p/{project.slug}/s/{prompt_set.slug}/"
    return {
        "projects": f"/o/{org}/",
        "project": f"/o/{org}/p/{project.slug}/",
        "set": base,
        "versions": base + "versions/",
        "prompt": base + "prompts/welcome.message/",
        "tokens": f"/o/{org}/tokens/",
        "instances": f"/o/{org}/instances/",
        "audit": f"/o/{org}/audit/",
        "base": base,
    }

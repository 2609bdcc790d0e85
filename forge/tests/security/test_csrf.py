"""CSRF: every form of the FORGE refuses a POST without the token, and every form on every page carries one."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from forge.tests.security.test_access_matrix import POST_ONLY, ROUTES, _fill, fingerprint

pytestmark = pytest.mark.django_db

FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S | re.I)


def test_every_post_without_the_csrf_token_is_refused_with_403_and_changes_nothing(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.team.owner)
    problems = []
    for route in [r for r in ROUTES if r.post is not None]:
        path = _fill(route.path, world.values)
        before = fingerprint()
        response = client.post(path, {k: _fill(v, world.values) for k, v in (route.data or {}).items()})
        if response.status_code != 403:
            problems.append(f"POST {path} without a CSRF token -> {response.status_code}")
        if fingerprint() != before:
            problems.append(f"POST {path} without a CSRF token changed something")
    assert not problems, "\n".join(problems)


def test_a_post_with_a_token_from_another_session_is_refused(world):
    stranger = Client(enforce_csrf_checks=True)
    stranger.force_login(world.outsider)
    page = stranger.get(_fill("/o/{other_org}/tokens/", world.values)).content.decode()
    foreign_token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.team.owner)
    path = _fill("/o/{org}/tokens/", world.values)
    before = fingerprint()
    response = client.post(path, {"target": _fill("{project}/staging", world.values), "kind": "live", "name": "x",
                                  "csrfmiddlewaretoken": foreign_token})
    assert response.status_code == 403
    assert fingerprint() == before


def test_every_post_form_on_every_page_carries_the_csrf_token(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.team.owner)
    problems = []
    pages = [_fill(r.path, world.values) for r in ROUTES if r.get != POST_ONLY]
    for path in pages:
        response = client.get(path)
        if response.status_code != 200 or not response.get("Content-Type", "").startswith("text/html"):
            continue  # a download (a version's zip) has no forms
        html = response.content.decode()
        for attributes, body in FORM.findall(html):
            if 'method="post"' in attributes.lower() and 'name="csrfmiddlewaretoken"' not in body:
                problems.append(f"{path}: a POST form without the CSRF token: <form{attributes}>")
        if "hx-post" in html and "X-CSRFToken" not in html:
            problems.append(f"{path}: htmx posts without the X-CSRFToken header")
    assert not problems, "\n".join(problems)


def test_sign_in_form_needs_the_csrf_token():
    client = Client(enforce_csrf_checks=True)
    response = client.post("/login/", {"username": "owner", "password": "anvil-demo"})
    assert response.status_code == 403


def test_the_live_api_is_not_driven_by_a_browser_session(world):
    """The token API is CSRF-exempt because it reads no cookie: a signed-in session alone gets 401."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.team.owner)
    for method, path in [("get", "/api/v1/live/releases"), ("post", "/api/v1/live/checkin"),
                         ("get", "/api/v1/peer/projects")]:
        response = getattr(client, method)(path)
        assert response.status_code == 401, path

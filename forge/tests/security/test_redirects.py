"""No page of the FORGE redirects a signed-in user off-site (open redirects), whatever ``next`` says."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

OFF_SITE = ("https://evil.example/phish", "//evil.example/x", "/\\evil.example", "http:evil.example")


def _on_site(location: str) -> bool:
    return location.startswith("/") and not location.startswith(("//", "/\\"))


def test_the_connection_test_never_redirects_off_site(world):
    client = Client()
    client.force_login(world.team.viewer)
    path = "/forges/{org}/peers/hidden-peer/check".format(**world.values)
    for target in OFF_SITE:
        response = client.post(path, {"next": target})
        assert response.status_code == 302
        location = response["Location"]
        assert _on_site(location), location


def test_sign_in_never_redirects_off_site(world):
    from forge.tests.factories import PASSWORD

    for target in OFF_SITE:
        client = Client()
        response = client.post(f"/login/?next={target}", {"username": world.team.viewer.get_username(),
                                                           "password": PASSWORD, "next": target})
        assert response.status_code == 302
        assert _on_site(response["Location"]), response["Location"]

"""API keys on /account/: made (shown once), listed with their last use, revoked; only one's own."""

from __future__ import annotations

import re

import pytest

from anvil_forge.accounts.models import ApiKey
from anvil_forge.api.keys import api_key_authenticate

pytestmark = pytest.mark.django_db


def test_a_key_made_on_the_account_page_is_shown_once_and_works(team, as_user):
    client = as_user(team.editor)

    made = client.post("/account/api-keys/", {"name": "ci push", "organisation": team.organisation.slug,
                                               "read_only": "1", "expires_in_days": "30"})

    assert made.status_code == 200
    raw = re.search(r"anvil_key_[A-Za-z0-9_-]{43}", made.content.decode()).group(0)
    key = api_key_authenticate(raw)
    assert key is not None and key.read_only and key.organisation == team.organisation and key.expires_at
    page = client.get("/account/").content.decode()
    assert raw not in page and key.prefix in page and "ci push" in page


def test_refusals_are_shown_on_the_page(team, other_team, as_user):
    client = as_user(team.editor)

    assert client.post("/account/api-keys/", {"name": ""}).status_code == 400
    foreign = client.post("/account/api-keys/", {"name": "x", "organisation": other_team.organisation.slug})
    assert foreign.status_code == 400 and ApiKey.objects.count() == 0
    assert client.post("/account/api-keys/", {"name": "x", "expires_in_days": "soon"}).status_code == 400


def test_revoking_from_the_page_refuses_the_key_and_nobody_revokes_anothers(team, as_user):
    client = as_user(team.editor)
    raw = re.search(r"anvil_key_[\w-]{43}", client.post("/account/api-keys/", {"name": "x"}).content.decode()).group(0)
    key = ApiKey.objects.get()

    assert as_user(team.owner).post(f"/account/api-keys/{key.pk}/revoke/").status_code == 404
    assert api_key_authenticate(raw) is not None
    assert client.get(f"/account/api-keys/{key.pk}/revoke/").status_code == 405
    assert client.post(f"/account/api-keys/{key.pk}/revoke/").status_code == 302
    assert api_key_authenticate(raw) is None
    assert "revoked" in client.get("/account/").content.decode()


def test_anonymous_visitors_are_sent_to_sign_in(db, client):
    response = client.post("/account/api-keys/", {"name": "x"})

    assert response.status_code == 302 and "/login/" in response["Location"]
    assert ApiKey.objects.count() == 0

"""Form fields that are not what the form sent (a hand-made POST, a stale tab, a script) are refused with
400 and a message naming the field, never a server error (issue 12, item 6)."""

from __future__ import annotations

import pytest

from anvil_forge.distribution.models import AccessToken
from anvil_forge.peering import services as peering_services
from anvil_forge.prompts.models import Prompt

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("role", ["viewer", "editor"])
@pytest.mark.parametrize("value", ["abc", "1.5", "-", "9" * 5000, "²"])
def test_rename_with_a_base_revision_that_is_no_number_is_refused_naming_the_field(
    as_user, team, prompt_set, urls, role, value
):
    response = as_user(team.member(role)).post(
        urls["prompt"] + "rename/", {"new_key": "welcome.renamed", "base_revision": value}
    )
    assert response.status_code == 400
    assert "base_revision is not a revision number" in response.content.decode()
    assert Prompt.objects.filter(prompt_set=prompt_set, key="welcome.message").exists()


@pytest.mark.parametrize("role", ["viewer", "editor"])
@pytest.mark.parametrize("value", ["abc", "-3", "9" * 5000])
def test_delete_with_a_base_revision_that_is_no_number_is_refused_naming_the_field(
    as_user, team, prompt_set, urls, role, value
):
    response = as_user(team.member(role)).post(urls["prompt"] + "delete/", {"base_revision": value})
    assert response.status_code == 400
    assert "base_revision is not a revision number" in response.content.decode()
    assert Prompt.objects.filter(prompt_set=prompt_set, key="welcome.message").exists()


def test_rename_and_delete_without_a_base_revision_still_work(as_user, team, prompt_set, urls):
    client = as_user(team.editor)
    assert client.post(urls["prompt"] + "rename/", {"new_key": "welcome.renamed"}).status_code == 302
    renamed = urls["base"] + "prompts/welcome.renamed/"
    assert client.post(renamed + "delete/", {"base_revision": ""}).status_code == 302
    assert not Prompt.objects.filter(prompt_set=prompt_set, key__startswith="welcome.").exists()


def test_save_with_a_base_revision_that_is_no_number_names_the_field(as_user, team, prompt_set, urls):
    response = as_user(team.editor).post(urls["prompt"], {"save": "1", "template": "Hi", "base_revision": "x"})
    assert response.status_code == 400
    assert "base_revision is not a revision number" in response.content.decode()


@pytest.mark.parametrize("days", ["99999999", "3000000", "9" * 5000, "0", "-1", "1e3"])
def test_a_token_expiry_out_of_range_is_a_form_error_not_a_server_error(as_user, team, project, urls, days):
    data = {"target": f"{project.slug}/production", "kind": "live", "name": "web", "expires_days": days}
    response = as_user(team.admin).post(urls["tokens"], data)
    body = response.content.decode()
    assert response.status_code == 400
    assert "Expires after (days) must be a whole number of days from 1 to 3650" in body
    assert not AccessToken.objects.filter(project=project).exists()


def test_a_token_expiry_of_ten_years_is_accepted(as_user, team, project, urls):
    data = {"target": f"{project.slug}/production", "kind": "live", "name": "web", "expires_days": "3650"}
    assert as_user(team.admin).post(urls["tokens"], data).status_code == 200
    token = AccessToken.objects.get(project=project)
    assert (token.expires_at - token.created_at).days in (3649, 3650)


@pytest.mark.parametrize("back", ["x", "0", "web:home", "javascript:alert(1)", "//evil.example/"])
def test_a_peer_check_whose_next_is_no_address_goes_back_to_the_peers_page(as_user, team, back, settings):
    settings.ANVIL_PEER_TIMEOUT_SECONDS = 0.5
    token = "anvil_peer_" + "p" * 43
    peering_services.peer_create(
        actor=team.owner, organisation=team.organisation, name="p1", url="http://127.0.0.1:9", token=token
    )
    org = team.organisation.slug
    response = as_user(team.viewer).post(f"/forges/{org}/peers/p1/check", {"next": back})
    assert response.status_code == 302 and response["Location"] == f"/forges/{org}/"


@pytest.mark.parametrize("where", ["value", "name"])
def test_a_nul_in_a_form_field_is_refused_naming_the_field(as_user, team, project, urls, where):
    """PostgreSQL refuses NUL in any text (a 500 there); SQLite stored it. Refused before any view runs."""
    data = {"target": f"{project.slug}/production", "kind": "live", "name": "web\x00"}
    if where == "name":
        data = {"target": f"{project.slug}/production", "kind": "live", "name": "web", "x\x00y": "1"}
    response = as_user(team.admin).post(urls["tokens"], data)
    assert response.status_code == 400
    assert "contains a NUL character" in response.content.decode()
    assert not AccessToken.objects.filter(project=project).exists()


def test_a_nul_in_a_search_or_the_address_is_refused(as_user, team, prompt_set, urls):
    client = as_user(team.viewer)
    assert client.get(urls["set"], {"q": "a\x00"}).status_code == 400
    assert client.get(urls["base"] + "prompts/a%00b/").status_code == 400
    assert client.get("/api/v1/live/bundles/core", {"version": "\x00"}).json()["error"].endswith("may hold one.")

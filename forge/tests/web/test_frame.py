from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_anonymous_visitor_is_sent_to_sign_in(client, project):
    response = client.get("/o/acme/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_sign_in_page_has_labelled_fields_and_no_outside_urls(client):
    body = client.get("/login/").content.decode()
    assert '<label for="id_username">' in body and '<label for="id_password">' in body
    assert "/static/vendor/htmx-2.0.11/htmx.min.js" in body
    assert "http://" not in body and "https://" not in body


def test_wrong_password_is_refused_and_keeps_the_username(client, members):
    response = client.post("/login/", {"username": "editor", "password": "wrong"})
    assert response.status_code == 200
    body = response.content.decode()
    assert 'role="alert"' in body and 'value="editor"' in body


def test_signing_in_lands_on_the_projects_of_the_organisation(client, members, project):
    response = client.post("/login/", {"username": "editor", "password": "anvil-demo-pw"}, follow=True)
    assert response.redirect_chain[-1][0] == "/o/acme/"
    body = response.content.decode()
    assert "Support bot" in body
    assert 'aria-label="Main"' in body and 'aria-current="page">Projects' in body


def test_sign_out_ends_the_session(client_as, members):
    client = client_as(members["viewer"])
    assert client.post("/logout/").status_code == 302
    assert client.get("/o/acme/").status_code == 302


@pytest.mark.parametrize(
    "path", ["/o/acme/", "/o/acme/p/support-bot/", "/o/acme/tokens/", "/o/acme/instances/", "/o/acme/audit/"]
)
def test_another_organisations_member_gets_not_found(client_as, outsider, project, path):
    assert client_as(outsider).get(path).status_code == 404


def test_switcher_lists_only_my_organisations_and_refuses_others(client_as, members, other_org, outsider):
    from anvil_forge.accounts.models import Membership

    Membership.objects.create(user=members["viewer"], organisation=other_org, role="viewer")
    client = client_as(members["viewer"])
    body = client.get("/o/acme/").content.decode()
    assert 'id="org-switcher"' in body and "Globex" in body
    assert client.get("/switch/?org=globex")["Location"] == "/o/globex/"
    # and the session remembers it for the home page
    assert client.get("/")["Location"] == "/o/globex/"
    assert client_as(outsider).get("/switch/?org=acme").status_code == 404

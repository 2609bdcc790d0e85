from __future__ import annotations

import pytest

from anvil_forge.accounts.models import Membership
from forge.tests import factories
from forge.tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def test_anonymous_visitor_is_sent_to_sign_in(client, urls):
    response = client.get(urls["project"])
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_sign_in_page_has_labelled_fields_and_no_outside_urls(client):
    body = client.get("/login/").content.decode()
    assert '<label for="id_username">' in body and '<label for="id_password">' in body
    assert "/static/vendor/htmx-2.0.11/htmx.min.js" in body
    assert "http://" not in body and "https://" not in body


def test_wrong_password_is_refused_and_keeps_the_username(client, team):
    username = team.editor.get_username()
    response = client.post("/login/", {"username": username, "password": "wrong"})
    assert response.status_code == 200
    body = response.content.decode()
    assert 'role="alert"' in body and f'value="{username}"' in body


def test_signing_in_lands_on_the_projects_of_the_organisation(client, team, project):
    # With one project and no history sign-in lands on that project (forge/tests/notifications/test_landing.py).
    factories.make_project(team.organisation, actor=team.owner)
    response = client.post("/login/", {"username": team.editor.get_username(), "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == f"/o/{team.organisation.slug}/"
    body = response.content.decode()
    assert project.name in body
    assert 'aria-label="Main"' in body and 'aria-current="page">Projects' in body


def test_sign_out_ends_the_session(as_user, team, urls):
    client = as_user(team.viewer)
    assert client.post("/logout/").status_code == 302
    assert client.get(urls["projects"]).status_code == 302


@pytest.mark.parametrize("page", ["projects", "project", "set", "versions", "prompt", "tokens", "instances", "audit"])
def test_another_organisations_member_gets_not_found(as_user, other_team, urls, page):
    assert as_user(other_team.owner).get(urls[page]).status_code == 404


def test_switcher_lists_only_my_organisations_and_refuses_others(as_user, team, other_team, project):
    Membership.objects.create(user=team.viewer, organisation=other_team.organisation, role="viewer")
    client = as_user(team.viewer)
    body = client.get(f"/o/{team.organisation.slug}/").content.decode()
    assert 'id="org-switcher"' in body and other_team.organisation.name in body
    target = f"/o/{other_team.organisation.slug}/"
    assert client.get(f"/switch/?org={other_team.organisation.slug}")["Location"] == target
    assert client.get("/")["Location"] == target  # the session remembers the choice
    assert as_user(other_team.editor).get(f"/switch/?org={team.organisation.slug}").status_code == 404


@pytest.fixture
def clean_login_failures():
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()  # failures are also counted per address: never leave 127.0.0.1 paused for later tests


def test_sign_in_says_when_failures_paused_it(client, team, settings, clean_login_failures):
    settings.ANVIL_LOGIN_MAX_FAILURES = 2
    username = team.editor.get_username()
    for _ in range(3):
        response = client.post("/login/", {"username": username, "password": "wrong"})
    assert "Too many failed sign-ins" in response.content.decode()
    response = client.post("/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 200  # still paused, even with the right password

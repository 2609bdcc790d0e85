"""Signing in lands where the user last worked: the set (or project) they last opened, remembered on the server per
user and organisation, so it holds across sign-ins and browsers; with no history, their only project, else the
projects list. An explicit ``?next=`` always wins."""

from __future__ import annotations

import pytest
from django.test import Client

from anvil_forge.accounts.models import Membership
from anvil_forge.notifications.models import LastVisit
from anvil_forge.prompts import services
from forge.tests import factories
from forge.tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def _sign_in(user, next_path: str = "") -> str:
    client = Client()
    response = client.post("/login/" + (f"?next={next_path}" if next_path else ""),
                           {"username": user.get_username(), "password": PASSWORD})
    assert response.status_code == 302
    return response["Location"]


def test_sign_in_lands_on_the_set_opened_last_in_an_earlier_session(team, project, prompt_set):
    other = factories.make_prompt_set_with_prompts(project, actor=team.editor)
    browser = Client()
    browser.force_login(team.editor)
    browser.get(f"/o/{team.organisation.slug}/p/{project.slug}/s/{other.slug}/")
    browser.get(f"/o/{team.organisation.slug}/p/{project.slug}/s/{prompt_set.slug}/")
    browser.post("/logout/")
    assert _sign_in(team.editor) == f"/o/{team.organisation.slug}/p/{project.slug}/s/{prompt_set.slug}/"


def test_opening_the_project_page_keeps_the_set_of_that_project_but_another_project_replaces_it(team, project,
                                                                                                 prompt_set):
    browser = Client()
    browser.force_login(team.editor)
    org = team.organisation.slug
    browser.get(f"/o/{org}/p/{project.slug}/s/{prompt_set.slug}/")
    browser.get(f"/o/{org}/p/{project.slug}/")
    assert _sign_in(team.editor) == f"/o/{org}/p/{project.slug}/s/{prompt_set.slug}/"
    second = factories.make_project(team.organisation, actor=team.owner)
    browser.get(f"/o/{org}/p/{second.slug}/")
    assert _sign_in(team.editor) == f"/o/{org}/p/{second.slug}/"


def test_an_explicit_next_wins_over_the_last_place(team, project, prompt_set):
    browser = Client()
    browser.force_login(team.editor)
    browser.get(f"/o/{team.organisation.slug}/p/{project.slug}/s/{prompt_set.slug}/")
    assert _sign_in(team.editor, "/account/") == "/account/"


def test_with_no_history_a_user_with_one_project_lands_on_it_and_with_two_on_the_projects_list(team, project):
    assert _sign_in(team.viewer) == f"/o/{team.organisation.slug}/p/{project.slug}/"
    factories.make_project(team.organisation, actor=team.owner)
    assert _sign_in(team.viewer) == "/"  # the home page, which shows the projects list of the organisation


def test_a_last_set_archived_since_lands_on_its_project(team, project, prompt_set):
    browser = Client()
    browser.force_login(team.editor)
    browser.get(f"/o/{team.organisation.slug}/p/{project.slug}/s/{prompt_set.slug}/")
    services.prompt_set_archive(actor=team.owner, prompt_set=prompt_set)
    assert _sign_in(team.editor) == f"/o/{team.organisation.slug}/p/{project.slug}/"


def test_a_user_removed_from_the_organisation_is_not_sent_back_into_it(team, project, prompt_set, other_team):
    browser = Client()
    browser.force_login(team.editor)
    browser.get(f"/o/{team.organisation.slug}/p/{project.slug}/s/{prompt_set.slug}/")
    assert LastVisit.objects.filter(user=team.editor).count() == 1
    services.membership_remove(
        actor=team.owner, membership=Membership.objects.get(user=team.editor, organisation=team.organisation)
    )
    assert team.organisation.slug not in _sign_in(team.editor)


def test_each_organisation_keeps_its_own_last_place_and_the_newest_wins(team, project, prompt_set, other_team):
    services.membership_add(actor=other_team.owner, organisation=other_team.organisation, user=team.editor,
                            role="editor")
    theirs = factories.make_project(other_team.organisation, actor=other_team.owner)
    browser = Client()
    browser.force_login(team.editor)
    browser.get(f"/o/{team.organisation.slug}/p/{project.slug}/s/{prompt_set.slug}/")
    browser.get(f"/o/{other_team.organisation.slug}/p/{theirs.slug}/")
    assert LastVisit.objects.filter(user=team.editor).count() == 2
    assert _sign_in(team.editor) == f"/o/{other_team.organisation.slug}/p/{theirs.slug}/"


def test_reopening_the_same_place_within_a_minute_writes_nothing(team, project, prompt_set):
    browser = Client()
    browser.force_login(team.editor)
    page = f"/o/{team.organisation.slug}/p/{project.slug}/s/{prompt_set.slug}/"
    browser.get(page)
    first = LastVisit.objects.get(user=team.editor).visited_at
    browser.get(page)
    browser.get(f"/o/{team.organisation.slug}/p/{project.slug}/")
    assert LastVisit.objects.get(user=team.editor).visited_at == first

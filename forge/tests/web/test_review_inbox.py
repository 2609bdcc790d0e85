"""The review inbox (issue 14): the landing page and the navigation show what waits for the signed-in user's
review (count and list: set, version, author, when, note), only to roles that may approve, never a version the
user may not approve (their own, where the project asks for four eyes), never another organisation's."""

from __future__ import annotations

import pytest

from anvil_forge.prompts import services
from forge.tests import factories

pytestmark = pytest.mark.django_db


def _inbox(body: str) -> str:
    return body.split('id="reviews"', 1)[1].split("</section>", 1)[0] if 'id="reviews"' in body else ""


def test_a_reviewer_sees_the_waiting_version_with_its_author_and_note_on_the_landing_page(as_user, team, project,
                                                                                         prompt_set, urls):
    services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set, note="Friendlier greeting")
    body = as_user(team.reviewer).get(urls["projects"]).content.decode()
    inbox = _inbox(body)
    assert "Waiting for your review" in inbox
    assert 'data-testid="reviews-count">1<' in inbox
    assert prompt_set.name in inbox and "v1" in inbox and team.editor.get_username() in inbox
    assert "Friendlier greeting" in inbox
    assert urls["set"] + "review/" in inbox


@pytest.mark.parametrize(("role", "shown"), [("owner", True), ("admin", True), ("reviewer", True),
                                             ("editor", False), ("viewer", False)])
def test_only_roles_that_may_approve_see_the_inbox_and_the_navigation_count(as_user, team, prompt_set, urls, role,
                                                                             shown):
    factories.make_submitted_version(prompt_set, author=team.add("editor"))
    body = as_user(team.member(role)).get(urls["projects"]).content.decode()
    assert bool(_inbox(body)) is shown
    assert ('data-testid="nav-reviews"' in body) is shown
    other_page = as_user(team.member(role)).get(urls["audit"]).content.decode()  # the count is on every page
    assert ('data-testid="nav-reviews"' in other_page) is shown


def test_the_author_does_not_see_their_own_version_where_four_eyes_are_required(as_user, team, prompt_set, urls):
    factories.make_submitted_version(prompt_set, author=team.admin)
    body = as_user(team.admin).get(urls["projects"]).content.decode()
    assert "Nothing is waiting for your review." in _inbox(body)
    assert 'data-testid="nav-reviews"' not in body


def test_the_author_sees_their_own_version_where_the_project_allows_self_approval(as_user, team):
    project = factories.make_project(team.organisation, actor=team.owner, require_four_eyes=False)
    prompt_set = factories.make_prompt_set_with_prompts(project, actor=team.editor)
    factories.make_submitted_version(prompt_set, author=team.admin)
    body = as_user(team.admin).get(f"/o/{team.organisation.slug}/").content.decode()
    assert prompt_set.name in _inbox(body)


def test_approved_and_sent_back_versions_leave_the_inbox(as_user, team, prompt_set, urls):
    version = factories.make_submitted_version(prompt_set, author=team.editor)
    services.version_request_changes(actor=team.reviewer, version=version, comment="Shorter")
    body = as_user(team.owner).get(urls["projects"]).content.decode()
    assert "Nothing is waiting for your review." in _inbox(body)


def test_another_organisations_reviewers_see_nothing_of_it(as_user, team, other_team, prompt_set, urls):
    services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set, note="Secret plans")
    for user in (other_team.owner, other_team.reviewer):
        client = as_user(user)
        theirs = f"/o/{other_team.organisation.slug}/"
        for path in (theirs, "/notifications/", theirs + "audit/"):
            body = client.get(path).content.decode()
            assert prompt_set.slug not in body and "Secret plans" not in body and team.organisation.slug not in body
            assert 'data-testid="nav-reviews"' not in body
        assert client.get(urls["projects"]).status_code == 404


def test_a_version_submitted_from_the_console_waits_for_every_reviewer(as_user, team, prompt_set, urls):
    factories.make_submitted_version(prompt_set)  # the console's SystemActor: no author user
    for role in ("owner", "reviewer"):
        inbox = _inbox(as_user(team.member(role)).get(urls["projects"]).content.decode())
        assert prompt_set.name in inbox and "the console" in inbox, role


def test_with_one_review_waiting_the_navigation_opens_it_and_with_two_the_inbox(as_user, team, project, prompt_set,
                                                                                 urls):
    factories.make_submitted_version(prompt_set, author=team.editor)
    body = as_user(team.reviewer).get(urls["audit"]).content.decode()
    assert f'<a href="{urls["set"]}review/" data-testid="nav-reviews">' in body
    second = factories.make_prompt_set_with_prompts(project, actor=team.editor, slug="second")
    factories.make_submitted_version(second, author=team.editor)
    body = as_user(team.reviewer).get(urls["audit"]).content.decode()
    assert f'<a href="{urls["projects"]}#reviews" data-testid="nav-reviews">' in body


def test_the_set_page_of_an_approved_version_offers_publishing_it_where_it_is_not_live_yet(as_user, team, prompt_set,
                                                                                            urls):
    version = factories.make_approved_version(prompt_set)
    body = as_user(team.editor).get(urls["set"]).content.decode()
    assert 'data-testid="publish-next"' in body
    assert f"{urls['set']}versions/{version.number}/publish/production/" in body
    assert f"Publish v{version.number} to staging" in body
    factories.make_release(version, "production")
    body = as_user(team.editor).get(urls["set"]).content.decode()
    assert f"Publish v{version.number} to production" not in body and f"Publish v{version.number} to staging" in body
    # A role that may not publish is not offered it.
    assert 'data-testid="publish-next"' not in as_user(team.reviewer).get(urls["set"]).content.decode()

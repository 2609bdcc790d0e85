"""The rollback pages: one action on the versions or release page, a confirmation with the diff, then done."""

from __future__ import annotations

import re

import pytest

from anvil_forge.distribution.models import Release
from anvil_forge.prompts import services
from anvil_forge.prompts.models import PromptSetVersion
from forge.tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(team, prompt_set):
    """v1 then v2 live in production; v3 approved and never published."""
    v1 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v1, actor=team.editor)
    services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    factories.edit_prompt(prompt_set, "welcome.message", "Worse {{ name }}", actor=team.editor)
    v2 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    release = factories.make_release(v2, actor=team.editor)
    services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    factories.edit_prompt(prompt_set, "welcome.message", "Third {{ name }}", actor=team.editor)
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    return v1, v2, release


def test_versions_page_offers_rollback_only_to_versions_live_there_before(as_user, team, urls, history):
    page = as_user(team.editor).get(urls["versions"]).content.decode()
    assert re.findall(r"Roll back (\w+) to version (\d+)", page) == [("production", "1")]
    assert "Roll back" not in as_user(team.viewer).get(urls["versions"]).content.decode()


def test_release_page_offers_the_version_live_before_it(as_user, team, urls, history):
    _, _, release = history
    page = as_user(team.editor).get(urls["base"] + f"releases/{release.pk}/").content.decode()
    assert f'href="{urls["base"]}versions/1/rollback/production/"' in page
    assert "Roll back production to version 1" in page
    assert "Roll back" not in as_user(team.reviewer).get(urls["base"] + f"releases/{release.pk}/").content.decode()


def test_confirmation_shows_the_diff_and_what_will_be_made(as_user, team, urls, history):
    response = as_user(team.editor).get(urls["base"] + "versions/1/rollback/production/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "Roll back production to version 1" in page and "Version 2 is live in production now" in page
    assert "This makes <strong>version 4</strong> with the content of version 1" in page
    assert "welcome.message" in page and "Worse" in page  # the diff from what is live
    assert '<button type="submit">Roll back production to v1</button>' in page
    assert not PromptSetVersion.objects.filter(number=4).exists()  # looking changes nothing


def test_confirming_makes_and_publishes_then_shows_the_release(as_user, team, urls, prompt_set, history):
    v1, _, _ = history
    client = as_user(team.editor)
    response = client.post(urls["base"] + "versions/1/rollback/production/")
    release = Release.objects.filter(prompt_set=prompt_set).order_by("-id").first()
    assert response.status_code == 302 and response["Location"] == urls["base"] + f"releases/{release.pk}/"
    assert release.version.number == 4 and release.version.digest == v1.digest
    page = client.get(response["Location"]).content.decode()
    assert "Version 4 is live in production" in page and "made version 4 and published it" in page


def test_a_rollback_version_never_shows_an_approval_of_its_own(as_user, team, urls, prompt_set, history):
    v1, _, _ = history
    as_user(team.editor).post(urls["base"] + "versions/1/rollback/production/")
    v4 = PromptSetVersion.objects.get(prompt_set=prompt_set, number=4)
    page = as_user(team.viewer).get(urls["versions"]).content.decode()
    row = page[page.index('id="v4"') : page.index('id="v3"')]
    assert f"rollback to v1 by {team.editor.username}" in row
    approved = f"content approved as v1 by {team.reviewer.username}, {v1.reviewed_at:%Y-%m-%d %H:%M}"
    assert approved in row
    # The reviewer's name appears only as v1's approval, never as v4's.
    assert row.count(team.reviewer.username) == 1
    detail = as_user(team.viewer).get(urls["base"] + "versions/4/").content.decode()
    assert f"Rollback to version 1's content by {team.editor.username}" in detail
    assert f"approved as version 1 by {team.reviewer.username}" in detail
    assert v4.reviewed_by is None


def test_a_version_never_live_there_is_refused_with_the_reason(as_user, team, urls, history):
    client = as_user(team.editor)
    page = client.get(urls["base"] + "versions/3/rollback/production/").content.decode()
    assert "was never live in production" in page and "<button type=\"submit\">Roll back" not in page
    response = client.post(urls["base"] + "versions/3/rollback/production/")
    assert response.status_code == 400 and "was never live in production" in response.content.decode()
    assert not PromptSetVersion.objects.filter(number=4).exists()


def test_live_pages_refresh_by_push_not_by_polling(as_user, team, urls, project, history):
    _, _, release = history
    client = as_user(team.viewer)
    for path in (urls["base"] + f"releases/{release.pk}/", urls["versions"]):
        page = client.get(path).content.decode()
        assert f'data-live-events="/o/{team.organisation.slug}/p/{project.slug}/live-events"' in page
        assert 'hx-trigger="anvil-live from:body"' in page and "every 1s" not in page
        assert "anvil/live-pages.js" in page

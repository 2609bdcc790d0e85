"""The set page's live region (issue 14): the pushed refresh of the review section gets the page (htmx selects
``#set-workflow`` and the status from it), the prompt search keeps getting the rows alone."""

from __future__ import annotations

import pytest

from forge.tests import factories

pytestmark = pytest.mark.django_db


def test_the_pushed_refresh_gets_the_review_section_and_the_search_gets_the_rows(as_user, team, prompt_set, urls):
    factories.make_submitted_version(prompt_set, author=team.editor)
    client = as_user(team.editor)
    refreshed = client.get(urls["set"], headers={"HX-Request": "true", "HX-Target": "set-workflow"}).content.decode()
    assert 'id="set-workflow"' in refreshed and 'id="set-status"' in refreshed
    assert "Version 1 is waiting for review" in refreshed
    searched = client.get(urls["set"] + "?q=welcome", headers={"HX-Request": "true", "HX-Target": "prompt-rows"})
    body = searched.content.decode()
    assert 'id="set-workflow"' not in body and "welcome.message" in body


def test_the_set_page_opts_into_live_refreshes(as_user, team, prompt_set, urls):
    body = as_user(team.viewer).get(urls["set"]).content.decode()
    assert 'hx-trigger="anvil-live from:body"' in body and "data-live-events=" in body

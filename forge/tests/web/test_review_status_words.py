"""The set statuses keep their words LIVE / REVIEW / LOCKED, but every page that shows one labels it so that a
first-time reader cannot take LIVE (being edited) for "live in production": "LIVE · editing", "REVIEW · waiting for
approval", "LOCKED · approved", each with a tooltip, and a legend where sets are listed (issue 14)."""

from __future__ import annotations

import re

import pytest

from anvil_forge.prompts import services
from forge.tests import factories

pytestmark = pytest.mark.django_db

LABELS = {"LIVE": "LIVE · editing", "REVIEW": "REVIEW · waiting for approval", "LOCKED": "LOCKED · approved"}
BADGE = re.compile(
    r'<span(?: id="[\w-]+")? class="badge badge-(?:live|review|locked)" data-status="(\w+)" '
    r'title="([^"]+)">([^<]+)</span>'
)


def _status_badges(body: str) -> list[tuple[str, str, str]]:
    """(status, tooltip, label) of each set-status badge outside the legend."""
    outside = re.sub(r'<details class="status-legend-box">.*?</details>', "", body, flags=re.S)
    return BADGE.findall(outside)


def _pages(urls: dict[str, str]) -> list[str]:
    return [urls["project"], urls["set"], urls["versions"], urls["set"] + "import/", urls["set"] + "review/"]


@pytest.mark.parametrize("status", ["LIVE", "REVIEW", "LOCKED"])
def test_every_page_that_shows_a_set_status_labels_it_unmistakably(as_user, team, prompt_set, urls, status):
    if status == "REVIEW":
        factories.make_submitted_version(prompt_set, author=team.editor)
    elif status == "LOCKED":
        factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    client = as_user(team.owner)
    for path in _pages(urls):
        badges = _status_badges(client.get(path).content.decode())
        assert badges, f"{path} shows no status"
        for shown, tooltip, label in badges:
            assert (shown, label) == (status, LABELS[status]), path
            assert len(tooltip) > 40, path


def test_the_live_tooltip_says_it_is_not_about_production(as_user, team, prompt_set, urls):
    body = as_user(team.viewer).get(urls["set"]).content.decode()
    (_, tooltip, _), *_ = _status_badges(body)
    assert "not a statement about production" in tooltip


def test_the_project_and_set_pages_explain_the_three_words(as_user, team, prompt_set, urls):
    for path in (urls["project"], urls["set"]):
        body = as_user(team.viewer).get(path).content.decode()
        legend = body.split('<details class="status-legend-box">', 1)[1].split("</details>", 1)[0]
        assert all(label in legend for label in LABELS.values()), path
        assert "says nothing about production" in legend


def test_no_page_shows_the_old_bare_badges(as_user, team, prompt_set, urls):
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    for path in _pages(urls):
        body = as_user(team.owner).get(path).content.decode()
        assert ">LIVE editing<" not in body and ">LOCKED<" not in body and ">REVIEW<" not in body, path

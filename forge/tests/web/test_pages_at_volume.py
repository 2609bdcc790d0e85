"""Big versions and diffs are paged (issue 19): a 500-prompt version or diff stays a page, not the whole set."""

from __future__ import annotations

import pytest

from anvil_forge.prompts.models import Prompt, PromptSetVersion
from anvil_forge.web.views import versions as version_views
from forge.tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_versions(team, prompt_set, monkeypatch):
    """Version 1 and 2 of ``prompt_set`` with 12 more prompts, all of them changed in version 2; pages of 5."""
    monkeypatch.setattr(version_views, "PROMPT_PAGE_SIZE", 5)
    monkeypatch.setattr(version_views, "CHANGE_PAGE_SIZE", 5)
    Prompt.objects.bulk_create(
        Prompt(prompt_set=prompt_set, key=f"extra.p{index:02d}", template=f"Extra {index}", updated_by=team.editor)
        for index in range(12)
    )
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    from anvil_forge.prompts import services

    services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    for prompt in Prompt.objects.filter(prompt_set=prompt_set):
        factories.edit_prompt(prompt_set, prompt.key, prompt.template + " (changed)", actor=team.editor)
    prompt_set.refresh_from_db()
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    return PromptSetVersion.objects.filter(prompt_set=prompt_set).count()


def test_the_diff_shows_one_page_of_changed_prompts_with_a_pager(as_user, team, urls, two_versions):
    client = as_user(team.viewer)
    total = Prompt.objects.count()

    first = client.get(urls["base"] + "diff/?a=1&b=2").content.decode()
    last = client.get(urls["base"] + "diff/?a=1&b=2&page=3").content.decode()

    assert first.count('class="diff-prompt"') == 5
    assert f"{total} changed" in first  # the counts are of the whole diff
    assert 'aria-label="Pages of changes"' in first and "page=2" in first and "a=1" in first
    assert last.count('class="diff-prompt"') == total - 10


def test_the_diff_table_headers_name_both_versions_and_headings_do_not_skip_a_level(as_user, team, urls, two_versions):
    body = as_user(team.viewer).get(urls["base"] + "diff/?a=1&b=2").content.decode()

    assert "<th></th>" not in body
    assert "<th>v1</th>" in body and "<th>v2</th>" in body
    assert body.index("<h2") < body.index("<h3")


def test_a_version_shows_one_page_of_its_prompts(as_user, team, urls, two_versions):
    client = as_user(team.viewer)
    total = Prompt.objects.count()

    first = client.get(urls["base"] + "versions/2/").content.decode()
    last = client.get(urls["base"] + "versions/2/?page=3").content.decode()

    assert first.count('class="card" aria-labelledby="p-') == 5
    assert 'aria-label="Pages of prompts"' in first
    assert last.count('class="card" aria-labelledby="p-') == total - 10

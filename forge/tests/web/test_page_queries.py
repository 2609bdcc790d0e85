"""No query per row (issue 19): every main page makes as many queries with few rows as with many.

The demo is grown twice (versions, releases, instances with processes, tokens, audit events); each page's
queries are counted at both sizes with Django's ``CaptureQueriesContext``. A count that grows with the rows
is an N+1.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from anvil_forge.distribution import services as distribution
from anvil_forge.distribution.checkin import CheckIn
from anvil_forge.prompts.models import PromptSetVersion
from forge.tests import factories

pytestmark = pytest.mark.django_db


def _checkin(token, index: int, slug: str, number: int) -> None:
    for pid in (1, 2):
        distribution.instance_checkin(
            token=token,
            checkin=CheckIn(
                instance_id=f"app-{index}",
                name=f"app-{index}",
                host=f"host-{index}.internal",
                process_count=2,
                client_version="0.2.0",
                mode="FROZEN" if index % 5 == 4 else "ACCEPTING",
                pins={},
                versions={slug: number if index % 3 else max(number - 1, 1)},
                usage={},
                process_id=pid,
            ),
        )


def _grow(team, project, prompt_set, *, to: int) -> None:
    """Versions up to ``to`` (all but the newest released), ``to`` tokens, ``2 * to`` instances."""
    production = factories.environment(project)
    have = PromptSetVersion.objects.filter(prompt_set=prompt_set).count()
    for number in range(have + 1, to + 1):
        if number > 1:
            prompt_set.refresh_from_db()
            if prompt_set.status == "LOCKED":
                from anvil_forge.prompts import services

                services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
            factories.edit_prompt(prompt_set, "welcome.message", f"Hello v{number} {{{{ name }}}}!", actor=team.editor)
        version = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
        if number < to:
            factories.make_release(version, actor=team.owner)
    tokens = []
    for index in range(to):
        made, _ = distribution.token_create(
            actor=team.owner, project=project, environment=production, kind="live", name=f"t{index}"
        )
        tokens.append(made)
    for index in range(2 * to):
        _checkin(tokens[index % len(tokens)], index, prompt_set.slug, to - 1)


def _pages(urls: dict[str, str], prompt_set) -> dict[str, str]:
    newest = PromptSetVersion.objects.filter(prompt_set=prompt_set).order_by("-number").first()
    release = prompt_set.releases.order_by("-id").first()
    base = urls["base"]
    return {
        **{name: urls[name] for name in ("projects", "project", "set", "versions", "tokens", "instances", "audit")},
        "diff": base + f"diff/?a=1&b={newest.number}",
        "version": base + f"versions/{newest.number}/",
        "publish": base + f"versions/{newest.number}/publish/production/",
        "release": base + f"releases/{release.pk}/",
        "release_acks": base + f"releases/{release.pk}/acks/",
        # The filtered and searched forms count the same way (the counting reads, then the shown rows).
        "release_waiting": base + f"releases/{release.pk}/acks/?state=waiting&q=app",
        "release_search": base + f"releases/{release.pk}/?q=app-1",
        "instances_filtered": urls["instances"] + f"?environment=production&state=live&version={prompt_set.slug}:v2",
        "instances_frozen": urls["instances"] + "?state=frozen&host=host",
        "diff_page": base + f"diff/?a=1&b={newest.number}&page=1",
        "set_search": urls["set"] + "?q=welcome",
    }


def _count(client, pages: dict[str, str]) -> dict[str, int]:
    counts = {}
    for name, path in pages.items():
        client.get(path)  # the first view of a page may fill per-process caches
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path)
        assert response.status_code == 200, (name, path, response.status_code)
        counts[name] = len(captured.captured_queries)
    return counts


def test_every_main_page_makes_the_same_number_of_queries_at_two_sizes(as_user, team, project, prompt_set, urls):
    client = as_user(team.owner)
    _grow(team, project, prompt_set, to=3)
    small = _count(client, _pages(urls, prompt_set))
    _grow(team, project, prompt_set, to=9)
    large = _count(client, _pages(urls, prompt_set))
    grew = {name: (small[name], large[name]) for name in small if large[name] > small[name]}
    assert not grew, f"queries that grow with the rows (pages: (few rows, more rows)): {grew}"

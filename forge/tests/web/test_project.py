"""The project page: each set's status and, per environment, the live version and instance counts."""

from __future__ import annotations

import pytest

from anvil_forge.distribution import services as distribution
from anvil_forge.distribution.checkin import CheckIn
from forge.tests import factories

pytestmark = pytest.mark.django_db


def _checkin(token, instance_id, **fields):
    defaults = {
        "name": instance_id,
        "host": "h",
        "process_count": 1,
        "client_version": "0.1.0",
        "mode": "ACCEPTING",
        "pins": {},
        "versions": {},
        "usage": {},
    }
    distribution.instance_checkin(token=token, checkin=CheckIn(instance_id=instance_id, **{**defaults, **fields}))


def test_project_page_shows_status_live_version_and_instance_counts(as_user, team, project, prompt_set, urls):
    v1 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v1, actor=team.editor)
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)  # v2, not live
    production = factories.environment(project)
    token, _ = distribution.token_create(
        actor=team.owner, project=project, environment=production, kind="live", name="t"
    )
    slug = prompt_set.slug
    _checkin(token, "a", versions={slug: 1})
    _checkin(token, "b", versions={slug: 1})
    _checkin(token, "c", versions={slug: 1}, mode="FROZEN")
    _checkin(token, "d", versions={slug: 1}, pins={slug: 1})
    body = as_user(team.editor).get(urls["project"]).content.decode()
    assert "LOCKED" in body
    assert "2 running" in body and "1 FROZEN" in body and "1 pinned" in body
    assert ">v1</a>" in body  # live in production
    assert "Publish v2" in body  # the newest approved version is offered to publishers
    assert "Publish v2" not in as_user(team.reviewer).get(urls["project"]).content.decode()


def test_writers_create_a_prompt_set_and_a_bad_name_keeps_the_form(as_user, team, project, urls):
    client = as_user(team.editor)
    response = client.post(urls["project"] + "sets/add/", {"slug": "onboarding", "name": "Onboarding"})
    assert response.status_code == 302 and response["Location"].endswith("/s/onboarding/")
    bad = client.post(urls["project"] + "sets/add/", {"slug": "Bad Slug!", "name": "Keep me"})
    assert bad.status_code == 400 and 'value="Keep me"' in bad.content.decode()
    assert as_user(team.reviewer).post(urls["project"] + "sets/add/", {"slug": "x"}).status_code == 403
    assert "New prompt set" not in as_user(team.reviewer).get(urls["project"]).content.decode()

"""``release.acknowledged`` raced: FORGE processes that all judge a release acknowledged at the same moment record
(and queue) it once (threads on PostgreSQL, each on its own connection, as several processes would be)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from anvil_forge.audit.models import AuditEvent
from anvil_forge.distribution import selectors
from anvil_forge.distribution import services as distribution
from anvil_forge.webhooks import acknowledged, services
from anvil_forge.webhooks.models import Delivery
from forge.tests import factories
from forge.tests.prompts.test_concurrency import race
from forge.tests.webhooks.test_acknowledged import checkin, publish

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL=postgresql://...)"),
]

RACERS = 4


def test_racing_checks_of_one_acknowledged_release_record_one_event_and_one_delivery(monkeypatch):
    team = factories.make_org_with_members()
    project = factories.make_project(team.organisation, actor=team.owner)
    prompt_set = factories.make_prompt_set_with_prompts(project, actor=team.editor)
    token, _ = distribution.token_create(
        actor=team.owner, project=project, environment=factories.environment(project), kind="live", name="t"
    )
    services.webhook_create(
        actor=team.owner, organisation=team.organisation, name="w", url="https://hooks.example.com/a",
        events=["release.acknowledged"],
    )
    publish(prompt_set, team, 1)
    checkin(token, "a", versions={prompt_set.slug: 1})
    release = publish(prompt_set, team, 2)
    checkin(token, "a", versions={prompt_set.slug: 2})
    # Every racer has judged the release acknowledged before any of them records it.
    judged = threading.Barrier(RACERS)
    standings = selectors.set_standings

    def judge_then_wait(*args, **kwargs):
        found = standings(*args, **kwargs)
        judged.wait(timeout=10)
        return found

    monkeypatch.setattr(selectors, "set_standings", judge_then_wait)
    acknowledged._done.clear()

    results, errors = race([lambda: acknowledged.release_check(release.pk) for _ in range(RACERS)])

    assert not errors, errors
    assert sum(result is not None for result in results) == 1
    assert AuditEvent.objects.filter(action="release.acknowledged").count() == 1
    assert Delivery.objects.filter(action="release.acknowledged").count() == 1

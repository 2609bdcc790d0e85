"""Racing approvals, publishes, edits and submits make one result, not two (threads on PostgreSQL).

SQLite serialises every writer (BEGIN IMMEDIATE), so these races only mean something on PostgreSQL; the
same rules are covered on SQLite by the stale-object tests in test_workflow.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection

from anvil_forge.audit.models import AuditEvent
from anvil_forge.core.exceptions import Conflict
from anvil_forge.distribution.models import Release
from anvil_forge.prompts import services
from anvil_forge.prompts.models import Prompt, PromptSetVersion, VersionState
from forge.tests import factories

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL=postgresql://...)"),
]

RACERS = 6


def race(calls: list[Callable[[], object]]) -> tuple[list[object], list[BaseException]]:
    """Run ``calls`` in threads released together; return (results, errors)."""
    from django.db import connections

    barrier = threading.Barrier(len(calls))
    results: list[object] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(call: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=10)
            outcome = call()
            with lock:
                results.append(outcome)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results, errors


@pytest.fixture
def racing_team():
    team = factories.make_org_with_members()
    reviewers = [team.reviewer, team.admin, team.owner] + [team.add("reviewer") for _ in range(RACERS - 3)]
    editors = [team.editor] + [team.add("editor") for _ in range(RACERS - 1)]
    project = factories.make_project(team.organisation, actor=team.owner)
    prompt_set = factories.make_prompt_set_with_prompts(project, actor=team.editor)
    return team, reviewers, editors, prompt_set


def test_racing_approvals_of_one_version_make_one_approval(racing_team):
    team, reviewers, _, prompt_set = racing_team
    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)

    results, errors = race([lambda r=r: services.version_approve(actor=r, version=version) for r in reviewers])

    assert len(results) == 1, errors
    assert len(errors) == RACERS - 1 and all(isinstance(e, Conflict) for e in errors), errors
    assert PromptSetVersion.objects.get(pk=version.pk).state == VersionState.APPROVED
    assert AuditEvent.objects.filter(action="version.approve", object_id=str(version.pk)).count() == 1


def test_racing_approve_and_request_changes_make_one_decision(racing_team):
    team, reviewers, _, prompt_set = racing_team
    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    calls = [lambda r=r: services.version_approve(actor=r, version=version) for r in reviewers[:3]] + [
        lambda r=r: services.version_request_changes(actor=r, version=version, comment="no") for r in reviewers[3:]
    ]

    results, errors = race(calls)

    assert len(results) == 1 and all(isinstance(e, Conflict) for e in errors), errors
    decisions = AuditEvent.objects.filter(
        object_id=str(version.pk), action__in=["version.approve", "version.request_changes"]
    )
    assert decisions.count() == 1


def test_racing_publishes_of_one_version_to_one_environment_make_one_release(racing_team):
    team, _, editors, prompt_set = racing_team
    version = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    production = factories.environment(prompt_set.project, "production")

    results, errors = race(
        [lambda e=e: services.version_publish(actor=e, version=version, environment=production) for e in editors]
    )

    assert len(results) == 1 and all(isinstance(e, Conflict) for e in errors), errors
    assert Release.objects.filter(environment=production, version=version).count() == 1
    assert AuditEvent.objects.filter(action="release.publish").count() == 1


def test_racing_edits_from_one_revision_save_one_and_refuse_the_rest(racing_team):
    _, _, editors, prompt_set = racing_team
    prompt = Prompt.objects.get(prompt_set=prompt_set, key="welcome.message")

    results, errors = race(
        [
            lambda e=e: services.prompt_update(
                actor=e, prompt=prompt, base_revision=prompt.revision, template=f"Hello from {e.username}"
            )
            for e in editors
        ]
    )

    assert len(results) == 1 and all(isinstance(e, Conflict) for e in errors), errors
    saved = Prompt.objects.get(pk=prompt.pk)
    assert saved.revision == prompt.revision + 1
    assert saved.template == f"Hello from {results[0].updated_by.username}"


def test_racing_submits_make_one_version(racing_team):
    _, _, editors, prompt_set = racing_team

    results, errors = race([lambda e=e: services.prompt_set_submit(actor=e, prompt_set=prompt_set) for e in editors])

    assert len(results) == 1 and all(isinstance(e, Conflict) for e in errors), errors
    assert PromptSetVersion.objects.filter(prompt_set=prompt_set).count() == 1

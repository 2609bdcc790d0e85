"""``health.0002``-``0004``: the health counters, keyed by release before, are keyed by (environment, version);
existing rows keep their counts, and rows that then share a key (one version released twice) are summed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("health", "0001_initial"), ("distribution", "0007_rollout_settings")]
AFTER = [("health", "0004_signals_per_version_keys"), ("distribution", "0008_remove_rolloutsignal")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_release_keyed_rows_are_moved_to_their_version_and_summed(team, project, prompt_set):
    from forge.tests import factories

    version = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(version, actor=team.editor)
    try:
        apps = _migrate(BEFORE)
        Release = apps.get_model("distribution", "Release")
        LiveInstance = apps.get_model("distribution", "LiveInstance")
        Signal = apps.get_model("health", "ReleaseSignal")
        Problem = apps.get_model("health", "ReleaseProblem")
        first = Release.objects.get()
        second = Release.objects.create(
            environment_id=first.environment_id, prompt_set_id=first.prompt_set_id, version_id=first.version_id
        )
        now = timezone.now().replace(second=0, microsecond=0)
        instance = LiveInstance.objects.create(
            project_id=project.pk, environment_id=first.environment_id, instance_id="app-1", name="a", host="h",
            first_seen_at=now, last_seen_at=now,
        )
        for release, renders in ((first, 3), (second, 4)):
            Signal.objects.create(release=release, instance=instance, bucket=now, renders=renders, template_error=1)
            Problem.objects.create(release=release, instance=instance, prompt="a.b", kind="template_error",
                                   detail="x", count=renders, first_at=now - timedelta(minutes=renders), last_at=now)
        Signal.objects.create(release=first, instance=instance, bucket=now - timedelta(minutes=1), renders=9)
    finally:
        apps = _migrate(AFTER)
    Signal = apps.get_model("health", "ReleaseSignal")
    Problem = apps.get_model("health", "ReleaseProblem")
    rows = sorted(Signal.objects.values_list("environment_id", "version_id", "bucket", "renders", "template_error"))
    environment_id = factories.environment(project).pk
    assert rows == [
        (environment_id, version.pk, now - timedelta(minutes=1), 9, 0),
        (environment_id, version.pk, now, 7, 2),
    ]
    [problem] = Problem.objects.all()
    assert (problem.version_id, problem.count, problem.first_at) == (version.pk, 7, now - timedelta(minutes=4))

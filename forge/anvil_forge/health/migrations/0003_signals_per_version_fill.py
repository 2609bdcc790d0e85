"""The second step of ``0002``: existing rows take their release's environment and version; rows that then share
a key (a version released twice in one minute) are summed into one. Alone in its migration: PostgreSQL refuses to
create an index or alter a table with pending trigger events in the transaction that changed the rows."""

from django.db import migrations

_COUNTERS = (
    "renders",
    "missing_variables",
    "invalid_variable",
    "template_error",
    "render_limit",
    "fallbacks",
    "guarded",
    "outcomes_ok",
    "outcomes_failed",
)


def _fill(apps, schema_editor):
    Release = apps.get_model("distribution", "Release")
    owners = dict(
        (pk, (environment_id, version_id))
        for pk, environment_id, version_id in Release.objects.values_list("pk", "environment_id", "version_id")
    )
    Signal = apps.get_model("health", "ReleaseSignal")
    kept = {}
    for row in Signal.objects.order_by("pk").iterator():
        row.environment_id, row.version_id = owners[row.release_id]
        key = (row.environment_id, row.version_id, row.instance_id, row.bucket)
        first = kept.get(key)
        if first is None:
            kept[key] = row
            row.save(update_fields=["environment", "version"])
            continue
        for name in _COUNTERS:
            setattr(first, name, getattr(first, name) + getattr(row, name))
        first.save(update_fields=list(_COUNTERS))
        row.delete()
    Problem = apps.get_model("health", "ReleaseProblem")
    kept = {}
    for row in Problem.objects.order_by("pk").iterator():
        row.environment_id, row.version_id = owners[row.release_id]
        key = (row.environment_id, row.version_id, row.instance_id, row.prompt, row.kind, row.detail)
        first = kept.get(key)
        if first is None:
            kept[key] = row
            row.save(update_fields=["environment", "version"])
            continue
        first.count += row.count
        first.guarded += row.guarded
        first.first_at = min(first.first_at, row.first_at)
        first.last_at = max(first.last_at, row.last_at)
        first.save(update_fields=["count", "guarded", "first_at", "last_at"])
        row.delete()


class Migration(migrations.Migration):
    dependencies = [
        ("health", "0002_signals_per_version"),
    ]

    operations = [
        migrations.RunPython(_fill, migrations.RunPython.noop),
    ]

"""LIVE instances get processes: one LiveProcess row per (instance, process id).

Each existing instance becomes one process (id 0, as clients that send no process id are stored) that ages
out like any other; 0003 then drops the per-process fields from LiveInstance (a migration of its own: on
PostgreSQL a table cannot be altered in the transaction that has just written rows referring to it).
"""

from datetime import timedelta

import django.db.models.deletion
from django.db import migrations, models

GONE_AFTER = timedelta(seconds=180)  # three default check-in intervals, as checkin.py computes it


def instances_to_processes(apps, schema_editor):
    LiveInstance = apps.get_model("distribution", "LiveInstance")
    LiveProcess = apps.get_model("distribution", "LiveProcess")
    LiveProcess.objects.bulk_create(
        [
            LiveProcess(
                instance_id=instance.pk,
                process_id=0,
                client_version=instance.client_version,
                mode=instance.mode,
                pins=instance.pins,
                versions=instance.versions,
                usage=instance.usage,
                first_seen_at=instance.first_seen_at,
                last_seen_at=instance.last_seen_at,
                expires_at=instance.last_seen_at + GONE_AFTER,
            )
            for instance in LiveInstance.objects.all().iterator()
        ],
        batch_size=500,
    )


def processes_to_instances(apps, schema_editor):
    LiveInstance = apps.get_model("distribution", "LiveInstance")
    for instance in LiveInstance.objects.all().iterator():
        process = instance.processes.order_by("-last_seen_at").first()
        if process is None:
            continue
        instance.client_version = process.client_version
        instance.mode = process.mode
        instance.pins = process.pins
        instance.versions = process.versions
        instance.usage = process.usage
        instance.last_seen_at = max(instance.last_seen_at, process.last_seen_at)
        instance.save(update_fields=["client_version", "mode", "pins", "versions", "usage", "last_seen_at"])


class Migration(migrations.Migration):

    dependencies = [
        ('distribution', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='LiveProcess',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('process_id', models.PositiveIntegerField()),
                ('client_version', models.CharField(max_length=32)),
                ('mode', models.CharField(choices=[('ACCEPTING', 'Accepting'), ('FROZEN', 'Frozen')], default='ACCEPTING', max_length=16)),
                ('pins', models.JSONField(blank=True, default=dict)),
                ('versions', models.JSONField(blank=True, default=dict)),
                ('usage', models.JSONField(blank=True, default=dict)),
                ('first_seen_at', models.DateTimeField()),
                ('last_seen_at', models.DateTimeField()),
                ('expires_at', models.DateTimeField()),
                ('instance', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='processes', to='distribution.liveinstance')),
            ],
            options={
                'ordering': ['process_id'],
                'constraints': [models.UniqueConstraint(fields=('instance', 'process_id'), name='process_unique_in_instance')],
            },
        ),
        migrations.RunPython(instances_to_processes, processes_to_instances),
    ]

"""The last step of ``0002``: drop the release column, make environment and version required, add the keys."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("health", "0003_signals_per_version_fill"),
    ]

    operations = [
        migrations.RemoveField(model_name="releasesignal", name="release"),
        migrations.RemoveField(model_name="releaseproblem", name="release"),
        migrations.AlterField(
            model_name="releasesignal",
            name="environment",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="prompts.environment"
            ),
        ),
        migrations.AlterField(
            model_name="releasesignal",
            name="version",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="prompts.promptsetversion"
            ),
        ),
        migrations.AlterField(
            model_name="releaseproblem",
            name="environment",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="prompts.environment"
            ),
        ),
        migrations.AlterField(
            model_name="releaseproblem",
            name="version",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="prompts.promptsetversion"
            ),
        ),
        migrations.AddConstraint(
            model_name="releasesignal",
            constraint=models.UniqueConstraint(
                fields=("environment", "version", "instance", "bucket"), name="version_signal_unique_minute"
            ),
        ),
        migrations.AddIndex(
            model_name="releasesignal",
            index=models.Index(fields=["environment", "version", "bucket"], name="health_signal_version_bucket"),
        ),
        migrations.AddConstraint(
            model_name="releaseproblem",
            constraint=models.UniqueConstraint(
                fields=("environment", "version", "instance", "prompt", "kind", "detail"),
                name="version_problem_unique",
            ),
        ),
    ]

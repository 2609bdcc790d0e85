"""Key the health counters by (environment, version) instead of release, so a rollout's canary version (not a
release until it is promoted) is counted in the same rows, and the rollout's own copy of the signals can go
(``distribution.0008_remove_rolloutsignal``). This step adds the columns; ``0003`` fills them from the release,
``0004`` drops the release column and adds the new keys (three migrations, three transactions: PostgreSQL refuses
to alter a table with pending trigger events in the transaction that changed its rows)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("distribution", "0007_rollout_settings"),
        ("health", "0001_initial"),
        ("prompts", "0005_version_state_digest_index"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="releasesignal", name="release_signal_unique_minute"),
        migrations.RemoveIndex(model_name="releasesignal", name="health_rele_release_f01f70_idx"),
        migrations.RemoveConstraint(model_name="releaseproblem", name="release_problem_unique"),
        migrations.AddField(
            model_name="releasesignal",
            name="environment",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="prompts.environment"
            ),
        ),
        migrations.AddField(
            model_name="releasesignal",
            name="version",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="prompts.promptsetversion"
            ),
        ),
        migrations.AddField(
            model_name="releaseproblem",
            name="environment",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="prompts.environment"
            ),
        ),
        migrations.AddField(
            model_name="releaseproblem",
            name="version",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="prompts.promptsetversion"
            ),
        ),
    ]

"""Test cases on prompts (``prompts.samples``): named sample inputs with checks on the rendered text."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("prompts", "0003_rollback_versions_have_no_reviewer")]

    operations = [
        migrations.AddField(
            model_name="prompt",
            name="tests",
            field=models.JSONField(blank=True, default=list),
        ),
    ]

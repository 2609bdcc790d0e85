"""Rollback versions made before this migration copied the reviewer and review time of the version they
repeat, so pages showed an approval dated before the version existed. A rollback version has no review of
its own: its content was approved as ``rollback_of`` (see ``prompts.rollback.approval_of``)."""

from django.db import migrations


def forget_copied_reviews(apps, schema_editor):
    PromptSetVersion = apps.get_model("prompts", "PromptSetVersion")
    PromptSetVersion.objects.filter(rollback_of__isnull=False, state="approved").update(
        reviewed_by=None, reviewed_at=None, review_comment=""
    )


class Migration(migrations.Migration):
    dependencies = [("prompts", "0002_promptset_archived_at")]

    operations = [migrations.RunPython(forget_copied_reviews, migrations.RunPython.noop)]

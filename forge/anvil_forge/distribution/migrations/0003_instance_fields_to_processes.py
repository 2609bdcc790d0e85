"""The per-process fields leave LiveInstance; they live on LiveProcess since 0002."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('distribution', '0002_live_processes'),
    ]

    operations = [
        # A default first, so that unapplying this migration can add the column back to existing rows.
        migrations.AlterField(
            model_name='liveinstance',
            name='client_version',
            field=models.CharField(default='', max_length=32),
        ),
        migrations.RemoveField(
            model_name='liveinstance',
            name='client_version',
        ),
        migrations.RemoveField(
            model_name='liveinstance',
            name='mode',
        ),
        migrations.RemoveField(
            model_name='liveinstance',
            name='pins',
        ),
        migrations.RemoveField(
            model_name='liveinstance',
            name='process_count',
        ),
        migrations.RemoveField(
            model_name='liveinstance',
            name='usage',
        ),
        migrations.RemoveField(
            model_name='liveinstance',
            name='versions',
        ),
    ]

"""A fresh deployment starts with one current version: the labelled zero-shot baseline."""

from django.db import migrations

from modelloop.baseline import ensure_text_baseline


def create_baseline(apps, schema_editor):
    ensure_text_baseline(apps.get_model("modelloop", "ModelVersion"))


class Migration(migrations.Migration):
    dependencies = [("modelloop", "0001_initial")]

    operations = [migrations.RunPython(create_baseline, migrations.RunPython.noop)]

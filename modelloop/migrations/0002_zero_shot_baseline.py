"""A fresh deployment starts with one current version: the labelled zero-shot baseline."""

from django.db import migrations

BASELINE_NAME = "zero-shot-text-baseline-v1"
DESCRIPTION = (
    "Zero-shot text-only baseline: cosine similarity of the MiniLM text embedding of "
    "'setting + scenario' to acceptable vs unacceptable descriptions, mapped to 1-5. "
    "It ignores the image; it is a placeholder until a trained head is promoted."
)


def create_baseline(apps, schema_editor):
    ModelVersion = apps.get_model("modelloop", "ModelVersion")
    if not ModelVersion.objects.filter(is_current=True).exists():
        ModelVersion.objects.get_or_create(
            name=BASELINE_NAME,
            defaults={"scorer": "zero-shot-text-baseline", "description": DESCRIPTION, "is_current": True},
        )


class Migration(migrations.Migration):
    dependencies = [("modelloop", "0001_initial")]

    operations = [migrations.RunPython(create_baseline, migrations.RunPython.noop)]

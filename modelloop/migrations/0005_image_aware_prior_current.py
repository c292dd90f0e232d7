"""The image-aware prior replaces the text-only baseline where nothing else was ever registered."""

from django.db import migrations
from django.utils import timezone

from modelloop.baseline import TEXT_BASELINE_NAME, prior_replaces_text_baseline


def forwards(apps, schema_editor):
    prior_replaces_text_baseline(apps.get_model("modelloop", "ModelVersion"), timezone.now())


def backwards(apps, schema_editor):
    ModelVersion = apps.get_model("modelloop", "ModelVersion")
    if ModelVersion.objects.filter(name="image-aware-prior-v1", is_current=True).exists() and ModelVersion.objects.filter(
        name=TEXT_BASELINE_NAME
    ).exists():
        ModelVersion.objects.filter(is_current=True).update(is_current=False)
        ModelVersion.objects.filter(name=TEXT_BASELINE_NAME).update(is_current=True)


class Migration(migrations.Migration):
    dependencies = [("modelloop", "0004_image_feature_cache")]

    operations = [migrations.RunPython(forwards, backwards)]

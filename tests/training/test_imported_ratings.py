"""Existing ratings train a head end to end, without a page being clicked: a ratings file is
imported (annotation.dataset.importing), then training.services runs export -> lists ->
train -> candidate version. The data is shaped unlike the live generator of test_runs.py:
lists of 3 to 6 scenarios, one to four raters each with their own bias, some scenarios
known only by a mean of many raters, some ratings without a modality."""

import csv
import random

import pytest

from annotation.dataset.importing import service as import_service
from annotation.models import ImportedAggregate, ImportedRating, Judgment
from modelloop.models import ModelVersion
from tests.conftest import png_bytes
from tests.factories import current_version
from training import services

pytestmark = pytest.mark.django_db

KIND = ["helping {} across the road", "sharing lunch with {}", "comforting {} who is crying", "thanking {} warmly",
        "carrying groceries for {}", "teaching {} to read"]
CRUEL = ["hitting {} with a stick", "stealing the wallet of {}", "laughing at {} who fell", "locking {} outside",
         "spitting on {}", "threatening {} with a knife"]
WHO = ["an old man", "a small child", "a neighbour", "a stranger", "a classmate", "a tourist"]


def ratings_file(folder, rng: random.Random, contexts: int = 24):
    """A CSV of ratings and means, and the images it names."""
    rows = []
    for n in range(contexts):
        image = f"scene-{n}.png"
        (folder / image).write_bytes(png_bytes(color=(rng.randrange(256), rng.randrange(256), rng.randrange(256))))
        who = WHO[n % len(WHO)]
        size = rng.randint(3, 6)
        texts = [(t.format(who), 4.6) for t in rng.sample(KIND, size // 2)]
        texts += [(t.format(who), 1.4) for t in rng.sample(CRUEL, size - size // 2)]
        for text, truth in texts:
            context = [f"study-a/{n}", image, f"scene {n}: {who} in a town square", text]
            if rng.random() < 0.2:  # only the mean of a larger panel is known
                mean = min(5.0, max(1.0, truth + rng.uniform(-0.3, 0.3)))
                rows.append([*context, "", "", "", "", f"{mean:.2f}", str(rng.randint(5, 30)), "panel"])
                continue
            for rater in rng.sample(range(40), rng.randint(1, 4)):
                bias = (rater % 3) - 1  # raters -1, 0, +1 off
                score = min(5, max(1, round(truth + bias * 0.6 + rng.uniform(-0.5, 0.5))))
                modality = rng.choice(["text", "image", "both", ""])
                rows.append([*context, f"worker-{rater}", str(score), modality, "2024-05-0{}".format(1 + rater % 9),
                             "", "", ""])
    path = folder / "earlier-study.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["external_id", "image_path", "setting", "scenario_text", "rater_id", "score", "modality",
                         "rated_at", "mean", "raters", "rater_group"])
        writer.writerows(rows)
    return path


def test_imported_ratings_train_a_candidate_head_end_to_end(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MORALE_EXPORT_TEST_FRACTION = 0.3
    folder = tmp_path / "earlier"
    folder.mkdir()
    batch = import_service.import_contexts(data_file=ratings_file(folder, random.Random(7)), images=folder)
    assert batch.status == "done", batch.errors
    assert batch.counts["ratings_created"] > 100 and batch.counts["aggregates_created"] > 5
    assert Judgment.objects.count() == 0  # nobody rated anything here

    baseline = current_version()
    run = services.training_run_execute(
        run_id=services.training_run_queue(config={"epochs": 30, "lr": 3e-3}).pk
    )
    assert run.status == "succeeded", run.error
    counts = run.export.counts
    assert counts["imported"]["judgments"] == counts["judgments"] == ImportedRating.objects.count()
    assert counts["imported"]["aggregates"] == ImportedAggregate.objects.count() > 0
    version = run.model_version
    assert version is not None and version != baseline and version.head_weights
    assert ModelVersion.objects.filter(pk=version.pk).exists()
    assert run.metrics["test"]["ndcg@5"] > 0.85  # kind actions above cruel ones, learnt from the imported means

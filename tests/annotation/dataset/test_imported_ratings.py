"""Existing ratings as data (annotation.dataset.importing, annotation.models.ImportedRating): rows
of ratings and pre-aggregated scores in CSV, JSON Lines and morale-export/1, row-numbered
errors, idempotent re-import, what the database refuses, that imports never count as a live
annotator's work unless asked, and how the export and the dataset figures include them."""

import csv
import io
import math
import uuid
from datetime import datetime
from datetime import timezone as dt_timezone
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.test import Client

from annotation import services
from annotation.dataset.export.service import dataset_export_create
from annotation.dataset.format import CSV_COLUMNS, iter_export
from annotation.dataset.importing import service
from annotation.dataset.table import judgment_table
from annotation.models import (
    Annotator,
    Context,
    DatasetExport,
    ImportBatch,
    ImportedAggregate,
    ImportedRater,
    ImportedRating,
    Judgment,
    Scenario,
)
from annotation.research import agreement, process, quality
from tests.annotation.dataset import test_import as import_tests
from tests.annotation.dataset.helpers import rated_context
from tests.annotation.dataset.test_import import images, media  # noqa: F401 - the import tests' fixtures
from tests.factories import AnnotatorFactory

pytestmark = pytest.mark.django_db

HEADER = ["external_id", "image_path", "setting", "scenario_text", "rater_id", "score", "modality", "rated_at",
          "mean", "raters", "rater_group"]


def write_csv(tmp_path, rows, header=HEADER, name="ratings.csv") -> Path:
    return import_tests.write_csv(tmp_path, rows, header=header, name=name)


def write_jsonl(tmp_path, records, name="ratings.jsonl") -> Path:
    return import_tests.write_jsonl(tmp_path, records, name=name)


def run(data, images=None, **kwargs) -> ImportBatch:
    return service.import_contexts(data_file=data, images=images, **kwargs)


def errors_of(batch) -> list[tuple]:
    return [(e["row"], e["field"]) for e in batch.errors]


STREET = ["street-1", "street.png", "child crossing a street"]
KITCHEN = ["kitchen-1", "kitchen.png", "a busy kitchen"]
# one row per rating; the last row is a pre-aggregated score (a mean of 12 raters)
RATING_ROWS = [
    [*STREET, "holding the child's hand", "r1", "5", "image", "2025-03-01T10:00:00Z", "", "", ""],
    [*STREET, "holding the child's hand", "r2", "4", "", "", "", "", ""],
    [*STREET, "letting go of the hand", "r1", "2", "Both", "2025-03-01", "", "", ""],
    [*STREET, "letting go of the hand", "r2", "1", "text", "", "", "", ""],
    [*KITCHEN, "licking the ladle", "r1", "1", "text", "", "", "", ""],
    [*KITCHEN, "washing hands before cooking", "", "", "", "", "4.25", "12", "pilot 2025"],
]


def scenario_named(text) -> Scenario:
    return Scenario.objects.get(text=text)


# --- importing ------------------------------------------------------------------------------------
def test_a_csv_of_ratings_imports_contexts_scenarios_ratings_and_means(tmp_path, images):
    batch = run(write_csv(tmp_path, RATING_ROWS), images)
    assert batch.status == "done", batch.errors
    c = batch.counts
    assert (c["contexts_created"], c["scenarios_created"], c["rows"]) == (2, 4, 6)
    assert (c["raters_created"], c["ratings_created"], c["aggregates_created"]) == (2, 5, 1)
    assert (c["ratings_present"], c["aggregates_present"], c["counts_towards_target"]) == (0, 0, False)

    hand = scenario_named("holding the child's hand")
    got = {(r.rater.external_id, r.score, r.modality, r.rated_at) for r in hand.imported_ratings.select_related("rater")}
    assert got == {("r1", 5, "image", datetime(2025, 3, 1, 10, tzinfo=dt_timezone.utc)), ("r2", 4, "", None)}
    letting_go = scenario_named("letting go of the hand").imported_ratings.get(rater__external_id="r1")
    assert (letting_go.modality, letting_go.rated_at) == ("both", datetime(2025, 3, 1, tzinfo=dt_timezone.utc))
    assert all(r.batch == batch and not r.counts_towards_target for r in ImportedRating.objects.all())
    mean = ImportedAggregate.objects.get()
    assert (mean.scenario.text, mean.mean, mean.raters, mean.rater_group) == (
        "washing hands before cooking", 4.25, 12, "pilot 2025")
    # no annotator, account or judgment was made for the imported raters
    assert Annotator.objects.count() == 0 and Judgment.objects.count() == 0
    assert ImportedRater.objects.filter(first_batch=batch).count() == 2


def test_json_lines_carry_ratings_and_means_in_the_shape_of_the_export(tmp_path, images):
    line = {"external_id": "street-1", "image_path": "street.png", "setting": "child crossing a street",
            "scenarios": [
                {"text": "holding the child's hand",
                 "judgments": [{"annotator_id": "r1", "score": 5, "modality": "image",
                                "created_at": "2025-03-01T10:00:00+02:00"},
                               {"annotator_id": "r2", "score": 4, "modality": None}]},
                {"text": "letting go of the hand", "aggregates": [{"mean": 1.5, "n": 4}]},
            ]}
    batch = run(write_jsonl(tmp_path, [line]), images)
    assert batch.status == "done", batch.errors
    assert (batch.counts["ratings_created"], batch.counts["aggregates_created"]) == (2, 1)
    first = ImportedRating.objects.get(rater__external_id="r1")
    assert first.rated_at == datetime(2025, 3, 1, 8, tzinfo=dt_timezone.utc)
    assert ImportedRating.objects.get(rater__external_id="r2").modality == ""
    assert (ImportedAggregate.objects.get().mean, ImportedAggregate.objects.get().rater_group) == (1.5, "")


def test_a_file_of_ratings_for_stored_contexts_needs_no_images(tmp_path, images):
    contexts = [[*STREET, "holding the child's hand", "", "", "", "", "", "", ""],
                [*STREET, "letting go of the hand", "", "", "", "", "", "", ""]]
    assert run(write_csv(tmp_path, contexts, name="contexts.csv"), images).status == "done"
    ratings = [["street-1", "Holding the child's hand", "r9", "3"], ["street-1", "letting go of the hand", "r9", "2"]]
    batch = run(write_csv(tmp_path, ratings, header=["external_id", "scenario_text", "rater_id", "score"]))
    assert batch.status == "done", batch.errors
    c = batch.counts
    assert (c["contexts_present"], c["scenarios_present"], c["scenarios_created"], c["ratings_created"]) == (1, 2, 0, 2)
    assert batch.options["images"] == "" and c["images_checked"] == 0
    assert set(ImportedRating.objects.values_list("scenario__text", "score")) == {
        ("holding the child's hand", 3), ("letting go of the hand", 2)}


def test_a_row_of_ratings_may_refer_to_a_context_given_by_another_row(tmp_path, images):
    rows = [["street-1", "", "", "holding the child's hand", "r1", "5", "", "", "", "", ""],
            [*STREET, "holding the child's hand", "r2", "4", "", "", "", "", ""]]
    batch = run(write_csv(tmp_path, rows), images)
    assert batch.status == "done", batch.errors
    assert (batch.counts["contexts_created"], batch.counts["scenarios_created"], batch.counts["ratings_created"]) == (1, 1, 2)


def test_reimporting_the_same_ratings_changes_nothing(tmp_path, images):
    path = write_csv(tmp_path, RATING_ROWS)
    run(path, images)
    before = sorted(ImportedRating.objects.values_list("pk", "rater_id", "scenario_id", "score", "modality", "rated_at"))
    again = run(path, images)
    assert again.status == "done", again.errors
    c = again.counts
    assert (c["ratings_created"], c["ratings_present"], c["aggregates_created"], c["aggregates_present"]) == (0, 5, 0, 1)
    assert (c["raters_created"], c["contexts_created"], c["scenarios_created"]) == (0, 0, 0)
    after = sorted(ImportedRating.objects.values_list("pk", "rater_id", "scenario_id", "score", "modality", "rated_at"))
    assert after == before and ImportedAggregate.objects.count() == 1 and ImportedRater.objects.count() == 2


def test_every_bad_rating_row_gets_its_row_number_and_reason_and_nothing_is_imported(tmp_path, images):
    rows = [
        [*STREET, "holding the child's hand", "r1", "6", "image", "", "", "", ""],  # 2: score outside 1-5
        [*STREET, "holding the child's hand", "r2", "3.5", "", "", "", "", ""],  # 3: not a whole number
        [*STREET, "holding the child's hand", "r3", "4", "smell", "", "", "", ""],  # 4: unknown modality
        [*STREET, "holding the child's hand", "r4", "4", "", "last week", "", "", ""],  # 5: not a time
        [*STREET, "letting go of the hand", "r1", "2", "", "", "", "", ""],  # 6: good ...
        [*STREET, "letting go of the hand", "r1", "3", "", "", "", "", ""],  # 7: ... the same rater again
        ["street-1", "", "", "pushing the child", "r1", "1", "", "", "", "", ""],  # 8: unknown scenario
        ["garden-9", "", "", "digging", "r1", "1", "", "", "", "", ""],  # 9: unknown context
        [*KITCHEN, "licking the ladle", "", "", "", "", "5.5", "3", ""],  # 10: mean outside 1-5
        [*KITCHEN, "licking the ladle", "", "", "", "", "2", "0", ""],  # 11: no raters
        [*KITCHEN, "licking the ladle", "r1", "2", "", "", "2", "3", ""],  # 12: a rating and a mean
        [*KITCHEN, "licking the ladle", "", "4", "", "", "", "", ""],  # 13: a score without a rater
    ]
    batch = run(write_csv(tmp_path, rows), images)
    assert batch.status == "rejected"
    assert errors_of(batch) == [
        (2, "score"), (3, "score"), (4, "modality"), (5, "rated_at"), (7, "rater_id"), (8, "scenario_text"),
        (9, "external_id"), (10, "mean"), (11, "raters"), (12, "mean"), (13, "rater_id"),
    ]
    messages = {e["row"]: e["message"] for e in batch.errors}
    assert "whole number from 1 to 5" in messages[2] and "Unknown modality" in messages[4]
    assert "same rater twice" in messages[7] and "row 6" in messages[7]
    assert "Unknown scenario" in messages[8] and "Unknown context" in messages[9]
    assert "from 1 to 5" in messages[10] and "at least 1" in messages[11]
    assert Context.objects.count() == Scenario.objects.count() == ImportedRating.objects.count() == 0
    assert ImportedRater.objects.count() == ImportedAggregate.objects.count() == 0


def test_allow_partial_imports_the_good_rating_rows_and_lists_the_others(tmp_path, images):
    rows = [*RATING_ROWS, [*STREET, "holding the child's hand", "r1", "3", "", "", "", "", ""]]  # 8: r1 twice
    batch = run(write_csv(tmp_path, rows), images, allow_partial=True)
    assert batch.status == "done" and errors_of(batch) == [(8, "rater_id")]
    assert batch.counts["ratings_created"] == 5
    assert ImportedRating.objects.get(rater__external_id="r1", scenario__text="holding the child's hand").score == 5


def test_a_rating_that_contradicts_a_stored_one_is_an_error_not_an_update(tmp_path, images):
    run(write_csv(tmp_path, RATING_ROWS), images)
    changed = [list(r) for r in RATING_ROWS]
    changed[1][5] = "2"  # r2 on the hand: 4 -> 2
    changed[5][8] = "4.5"  # the pilot's mean
    batch = run(write_csv(tmp_path, changed, name="changed.csv"), images)
    assert batch.status == "rejected" and errors_of(batch) == [(3, "score"), (7, "mean")]
    assert "never changes stored ratings" in batch.errors[0]["message"]
    assert ImportedRating.objects.get(rater__external_id="r2", scenario__text="holding the child's hand").score == 4


def test_a_line_that_is_not_an_export_line_cannot_give_a_bare_mean(tmp_path, images):
    line = {"image_path": "street.png", "setting": "child crossing a street",
            "scenarios": [{"text": "holding the child's hand", "mean": 4.2, "n": 3}]}
    batch = run(write_jsonl(tmp_path, [line]), images)
    assert batch.status == "rejected" and errors_of(batch) == [(1, "scenarios[0].n"), (1, "scenarios[0].mean")]
    assert '"aggregates"' in batch.errors[0]["message"]


def test_json_lines_rating_errors_name_the_entry(tmp_path, images):
    line = {"image_path": "street.png", "setting": "child crossing a street",
            "scenarios": [{"text": "a", "judgments": [{"annotator_id": "r1", "score": 0}, {"score": 3, "mood": "x"}]},
                          {"text": "b", "aggregates": [{"mean": "high", "n": 2}]}]}
    batch = run(write_jsonl(tmp_path, [line]), images)
    assert batch.status == "rejected"
    assert errors_of(batch) == [(1, "scenarios[0].judgments[0].score"), (1, "scenarios[0].judgments[1].mood"),
                                (1, "scenarios[0].judgments[1].annotator_id"), (1, "scenarios[1].aggregates[0].mean")]


# --- morale-export/1 round trips ---------------------------------------------------------------------
def study_with_imports(tmp_path, images):
    """Live judgments on one context (3 annotators, one reconfirmed answer) plus the ratings file."""
    context, scenarios, annotators, judgments = rated_context(
        [[(4, "image"), (5, "image"), (4, "both")], [(2, "text"), (1, "text"), (3, "text")]], setting="a park")
    services.judgment_reconfirm(annotator=annotators[0], judgment_id=judgments[0][scenarios[1].pk].pk, score=1,
                                modality="text", page_token=uuid.uuid4())
    run(write_csv(tmp_path, RATING_ROWS), images)
    return context, scenarios, annotators


def aggregates_by_text(path) -> dict:
    return {
        s["text"]: (s["n"], round(s["mean"], 12), s["majority_modality"], len(s["judgments"]), len(s["aggregates"]))
        for line in iter_export(path) for s in line["scenarios"]
    }


def test_an_export_reimported_into_its_own_database_adds_no_ratings(tmp_path, images):
    study_with_imports(tmp_path, images)
    export = dataset_export_create(fmt="jsonl", max_sd=None)
    counts = {model: model.objects.count() for model in (Judgment, ImportedRating, ImportedRater, ImportedAggregate)}
    batch = run(export.file.path, settings.MEDIA_ROOT)
    assert batch.status == "done", batch.errors
    c = batch.counts
    # the live annotators' judgments are judgments here already; the imported ones are present
    assert (c["ratings_live"], c["ratings_present"], c["ratings_created"], c["raters_created"]) == (6, 5, 0, 0)
    assert (c["aggregates_present"], c["aggregates_created"]) == (1, 0)
    assert counts == {model: model.objects.count() for model in counts}


class _Rollback(Exception):
    pass


def test_an_export_with_ratings_imports_into_an_empty_database_with_the_same_aggregates(tmp_path, images):
    try:
        with transaction.atomic():
            study_with_imports(tmp_path, images)
            path = Path(dataset_export_create(fmt="jsonl", max_sd=None).file.path)
            before = aggregates_by_text(path)
            raise _Rollback
    except _Rollback:
        pass
    assert Context.objects.count() == ImportedRating.objects.count() == 0
    batch = run(path, settings.MEDIA_ROOT)
    assert batch.status == "done", batch.errors
    assert (batch.counts["ratings_created"], batch.counts["aggregates_created"]) == (11, 1)
    assert Judgment.objects.count() == 0  # the exporting database's annotators are imported raters here
    after = aggregates_by_text(dataset_export_create(fmt="jsonl", max_sd=None).file.path)
    assert after == before
    assert run(path, settings.MEDIA_ROOT).counts["ratings_present"] == 11


def test_a_live_annotators_id_on_a_scenario_they_did_not_rate_is_refused(tmp_path, images):
    run(write_csv(tmp_path, RATING_ROWS), images)
    annotator = AnnotatorFactory()
    rows = [[*STREET, "holding the child's hand", str(annotator.public_id), "4", "", "", "", "", ""]]
    batch = run(write_csv(tmp_path, rows, name="live.csv"), images)
    assert batch.status == "rejected" and errors_of(batch) == [(2, "rater_id")]
    assert "never adds judgments of annotators" in batch.errors[0]["message"]


# --- the database refuses bad rows -------------------------------------------------------------------
@pytest.fixture
def stored_rating(tmp_path, images):
    run(write_csv(tmp_path, RATING_ROWS), images)
    return ImportedRating.objects.first()


def refused(**fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        ImportedRating.objects.create(**fields)


def test_the_database_refuses_bad_imported_ratings_and_means(stored_rating):
    base = {"batch": stored_rating.batch, "rater": stored_rating.rater}
    other = Scenario.objects.exclude(pk__in=stored_rating.rater.ratings.values("scenario")).first()
    ImportedRating.objects.create(**base, scenario=other, score=3, modality="")  # the model's rows go in ...
    ImportedRating.objects.filter(scenario=other).delete()  # (deleting is not updating)
    refused(**base, scenario=other, score=0)  # ... but not these
    refused(**base, scenario=other, score=6)
    refused(**base, scenario=other, score=3, modality="smell")
    refused(**base, scenario=stored_rating.scenario, score=3)  # the same rater twice on one scenario
    for mean, raters in ((5.5, 3), (0.5, 3), (float("nan"), 3), (3.0, 0)):
        with pytest.raises(IntegrityError), transaction.atomic():
            ImportedAggregate.objects.create(batch=stored_rating.batch, scenario=other, mean=mean, raters=raters,
                                             rater_group=f"g{mean}")
    with pytest.raises(IntegrityError), transaction.atomic():
        ImportedAggregate.objects.create(batch=stored_rating.batch, scenario=ImportedAggregate.objects.get().scenario,
                                         mean=3, raters=1, rater_group="pilot 2025")  # the same group twice
    with pytest.raises(IntegrityError), transaction.atomic():
        ImportedRater.objects.create(external_id="", first_batch=stored_rating.batch)


def test_imported_rows_are_append_only(stored_rating):
    with pytest.raises(ValueError, match="append-only"):
        stored_rating.save()
    for model in (ImportedRating, ImportedAggregate, ImportedRater):
        with pytest.raises(Exception, match="append-only"), transaction.atomic():
            model.objects.filter(pk=model.objects.first().pk).update(created_at=stored_rating.created_at)
    assert ImportedRating.objects.get(pk=stored_rating.pk).score == stored_rating.score


# --- never a live annotator's work, unless asked --------------------------------------------------------
def one_scenario_context(tmp_path, images, ratings: int, **options):
    rows = [[*STREET, "holding the child's hand", f"r{i}", "4", "", "", "", "", ""] for i in range(ratings)]
    batch = run(write_csv(tmp_path, rows, name=f"r{ratings}.csv"), images, **options)
    assert batch.status == "done", batch.errors
    return scenario_named("holding the child's hand")


def test_imported_ratings_take_no_live_annotators_slot_by_default(settings, tmp_path, images):
    settings.MORALE_CANARY_RATE = 0.0
    scenario = one_scenario_context(tmp_path, images, 3)
    assert (scenario.judgment_count, scenario.context.judgment_count) == (0, 0)
    pages = [services.assignment_get_or_create(annotator=AnnotatorFactory()) for _ in range(3)]
    assert all(page is not None and page.context_id == scenario.context_id for page in pages)


def test_imported_ratings_asked_to_count_fill_the_judgments_per_scenario(settings, tmp_path, images):
    settings.MORALE_CANARY_RATE = 0.0
    settings.MORALE_JUDGMENTS_PER_SCENARIO = 3
    scenario = one_scenario_context(tmp_path, images, 2, count_towards_target=True)
    assert (scenario.judgment_count, scenario.context.judgment_count) == (2, 2)
    first = AnnotatorFactory()
    page = services.assignment_get_or_create(annotator=first)
    assert page is not None and [i.scenario_id for i in page.items.all()] == [scenario.pk]
    assert services.assignment_get_or_create(annotator=AnnotatorFactory()) is None  # 2 imported + 1 held: full
    # a mean of raters counts as its raters
    run(write_csv(tmp_path, [[*KITCHEN, "licking the ladle", "", "", "", "", "2", "3", ""]], name="mean.csv"), images,
        count_towards_target=True)
    assert scenario_named("licking the ladle").judgment_count == 3
    assert services.assignment_get_or_create(annotator=AnnotatorFactory()) is None


def test_imports_change_no_figure_of_live_annotators(settings, tmp_path, images):
    settings.MORALE_SCREEN_MIN_JUDGMENTS = 1
    context, scenarios, annotators = study_with_imports(tmp_path, images)
    stats_before = quality.annotator_stats()
    progress_before = process.collection_progress()
    revisions_before, disagreements_before = process.revision_rates(), process.disagreement_rates()
    # more imports, on the live annotators' own scenarios too
    line = {"image_path": context.image.name, "setting": context.setting, "image_sha256": context.image_sha256,
            "scenarios": [{"text": s.text, "judgments": [{"annotator_id": f"x{i}", "score": 1 + i} for i in range(4)]}
                          for s in scenarios]}
    assert run(write_jsonl(tmp_path, [line]), settings.MEDIA_ROOT).status == "done"
    assert quality.annotator_stats() == stats_before  # counts, leave-one-out correlations, flags
    assert process.collection_progress() == progress_before
    assert (process.revision_rates(), process.disagreement_rates()) == (revisions_before, disagreements_before)
    client = Client()
    client.force_login(annotators[0].user)
    rows = client.get("/api/v1/judgments/").json()["results"]
    assert {r["id"] for r in rows} == set(Judgment.objects.filter(annotator=annotators[0]).values_list("pk", flat=True))
    assert Annotator.objects.count() == 3


# --- exported and counted like the rest -------------------------------------------------------------
def test_the_export_includes_imported_ratings_and_means_and_says_how_many(tmp_path, images):
    study_with_imports(tmp_path, images)
    batch = ImportBatch.objects.get(format="csv")
    record = dataset_export_create(fmt="jsonl", max_sd=None)
    scenarios = {s["text"]: s for line in iter_export(record.file.path) for s in line["scenarios"]}
    hand = scenarios["holding the child's hand"]
    assert (hand["n"], hand["mean"], hand["sd"]) == (2, 4.5, pytest.approx(math.sqrt(0.5)))
    assert hand["majority_modality"] == "image" and hand["modality_votes"] == {"text": 0, "image": 1, "both": 0}
    rater = ImportedRater.objects.get(external_id="r1")
    first = hand["judgments"][0]
    assert first == {"judgment_id": None, "annotator_id": str(rater.public_id), "score": 5, "modality": "image",
                     "phase": "initial", "seconds_spent": None, "created_at": "2025-03-01T10:00:00.000000+00:00",
                     "revises": None, "initial_score": None, "initial_modality": None, "model_score_shown": None,
                     "import_batch": batch.pk}
    assert "r1" not in record.file.open("rb").read().decode()  # external rater ids never leave the database
    assert hand["judgments"][1]["modality"] is None and hand["judgments"][1]["created_at"] is None
    # a mean of 12 raters: n and mean, no sd, no modality
    washing = scenarios["washing hands before cooking"]
    assert (washing["n"], washing["mean"], washing["sd"], washing["majority_modality"]) == (12, 4.25, None, None)
    assert washing["judgments"] == [] and washing["aggregates"] == [
        {"import_batch": batch.pk, "rater_group": "pilot 2025", "n": 12, "mean": 4.25}]
    # live and imported side by side in one scenario list: live first
    assert [j["import_batch"] for s in scenarios.values() for j in s["judgments"]].count(None) == 6
    c = record.counts
    assert c["imported"] == {"judgments": 5, "raters": 2, "aggregates": 1, "aggregate_raters": 12,
                             "aggregates_dropped": 0}
    assert (c["judgments"], c["annotators"], c["read"]["aggregates"], c["dropped"]["imported_judgments"]) == (11, 5, 1, 0)
    assert record.options["include_imported"] is True


def test_an_export_may_leave_the_imports_out_on_purpose(tmp_path, images):
    study_with_imports(tmp_path, images)
    record = dataset_export_create(fmt="jsonl", max_sd=None, include_imported=False)
    lines = list(iter_export(record.file.path))
    assert [line["setting"] for line in lines] == ["a park"]
    assert all(j["import_batch"] is None for line in lines for s in line["scenarios"] for j in s["judgments"])
    c = record.counts
    assert (c["dropped"]["imported_judgments"], c["imported"]["aggregates_dropped"], c["judgments"]) == (5, 1, 6)
    assert c["read"]["judgments"] == 12 and c["dropped"]["contexts_without_scenarios"] == 2


def test_a_high_sd_scenario_drops_its_imported_ratings_and_means_too(tmp_path, images):
    rows = [[*STREET, "holding the child's hand", "r1", "1", "", "", "", "", ""],
            [*STREET, "holding the child's hand", "r2", "5", "", "", "", "", ""],
            [*STREET, "holding the child's hand", "", "", "", "", "3", "10", ""]]
    run(write_csv(tmp_path, rows), images)
    c = dataset_export_create(fmt="jsonl", max_sd=1.2).counts
    assert (c["dropped"]["high_sd_scenarios"], c["dropped"]["high_sd_judgments"], c["imported"]["aggregates_dropped"]) == (1, 2, 1)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_csv_and_parquet_exports_carry_the_imported_rows(tmp_path, images, fmt):
    study_with_imports(tmp_path, images)
    jsonl = dataset_export_create(fmt="jsonl", max_sd=None)
    other = dataset_export_create(fmt=fmt, max_sd=None)
    if fmt == "parquet":
        assert list(iter_export(other.file.path)) == list(iter_export(jsonl.file.path))
        return
    with open(other.file.path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert len(rows) == 11 + 1  # one row per judgment, one per imported mean
    mean_rows = [r for r in rows if r["aggregate_n"]]
    assert [(r["scenario_text"], r["aggregate_n"], r["aggregate_mean"], r["judgment_id"], r["scenario_n"])
            for r in mean_rows] == [("washing hands before cooking", "12", "4.25", "", "12")]
    assert sum(1 for r in rows if r["import_batch"] and not r["aggregate_n"]) == 5


def test_the_dataset_figures_see_the_imports_the_export_has(tmp_path, images):
    study_with_imports(tmp_path, images)
    table = judgment_table()
    assert int(table.imported.sum()) == 5 and table.n_judgments == 11
    assert (table.annotator[table.imported] < 0).all()
    assert judgment_table(include_imported=False).n_judgments == 6
    ratings = agreement.rating_distribution(table)
    assert ratings["total"] == 10 and ratings["modality_unknown"] == 1
    assert np.array_equal(table.modality_counts().sum(axis=1), np.bincount(table.unit[table.modality >= 0],
                                                                          minlength=table.n_units))


def test_the_import_batch_page_shows_the_counts_of_ratings(tmp_path, images, admin_client):
    batch = run(write_csv(tmp_path, RATING_ROWS), images)
    page = admin_client.get(f"/admin/annotation/importbatch/{batch.pk}/change/").content.decode()
    assert "ratings 5 new / 0 present" in page and "mean scores 1 new / 0 present" in page


def test_the_command_imports_a_ratings_file_without_images(tmp_path, images):
    run(write_csv(tmp_path, RATING_ROWS), images)
    path = write_csv(tmp_path, [["street-1", "letting go of the hand", "r7", "3"]],
                     header=["external_id", "scenario_text", "rater_id", "score"], name="more.csv")
    out = io.StringIO()
    call_command("import_contexts", str(path), "--count-towards-target", stdout=out)
    assert '"ratings_created": 1' in out.getvalue() and '"counts_towards_target": true' in out.getvalue()
    assert scenario_named("letting go of the hand").judgment_count == 1


def test_the_command_and_the_api_choose_whether_exports_keep_the_imports(tmp_path, images, admin_user, monkeypatch):
    from rest_framework.test import APIClient

    from annotation import tasks

    study_with_imports(tmp_path, images)
    out = io.StringIO()
    call_command("export_dataset", "--format", "jsonl", "--max-sd", "none", "--no-include-imported", stdout=out)
    assert '"imported_judgments": 5' in out.getvalue()
    monkeypatch.setattr(tasks.export_dataset, "delay", lambda export_id: None)
    api = APIClient()
    api.force_authenticate(admin_user)
    response = api.post("/api/v1/exports/", {"format": "jsonl", "include_imported": False}, format="json")
    assert response.status_code == 202, response.content
    assert DatasetExport.objects.get(pk=response.json()["id"]).options["include_imported"] is False

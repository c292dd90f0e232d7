"""Dataset export (annotation.dataset: format, export): format, aggregates, split, filters, files, reader.

Data is made through annotation.services (pages rated by annotators, grounding checks),
as in the product; the expected aggregates are computed by hand in each test.
"""

import csv
import hashlib
import io
import json
import math
import tempfile
import uuid
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation import services
from annotation.dataset.export.service import ExportFailed, dataset_export_create
from annotation.dataset.export.writers import JsonlWriter, csv_cell
from annotation.dataset.format import CSV_COLUMNS, FORMATS, ExportFormatError, aggregate, iter_export, split_for
from annotation.models import Annotator, DatasetExport
from morale import jobs
from tests.annotation.dataset.helpers import rate_page, rated_context
from tests.factories import AnnotatorFactory, UserFactory, make_canary, make_context, make_scenarios, predict

pytestmark = pytest.mark.django_db


# --- helpers ----------------------------------------------------------------------------------
def export(fmt="jsonl", **overrides):
    return dataset_export_create(fmt=fmt, **overrides)


def records(fmt="jsonl", **overrides):
    record = export(fmt, **overrides)
    return record, list(iter_export(record.file.path))


def scenario_in(lines, scenario):
    for line in lines:
        for s in line["scenarios"]:
            if s["scenario_id"] == scenario.pk:
                return s
    return None


def write_lines(tmp_path, lines):
    path = tmp_path / "handmade.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# --- format and aggregates --------------------------------------------------------------------
def test_jsonl_line_holds_context_scenarios_judgments_and_hand_computed_aggregates():
    context, (s1, s2), annotators, judgments = rated_context(
        [
            [(4, "image"), (5, "image"), (4, "both")],  # mean 13/3, sd sqrt(1/3), majority image
            [(2, "text"), (3, "image"), (1, "both")],  # mean 2, sd 1, three-way tie -> both
        ],
        setting="child crossing a street",
        image_origin="generated",
        image_unreliable=True,
    )
    record, lines = records()
    assert record.status == "done" and len(lines) == 1
    line = lines[0]
    assert list(line)[0] == "format" and line["format"] == "morale-export/1"
    assert line["context_id"] == context.pk
    assert line["split"] == split_for(context.pk, seed="morale-split-1", test_fraction=0.1)
    assert line["setting"] == "child crossing a street"
    assert line["image_path"] == context.image.name and not line["image_path"].startswith("/")
    assert line["image_sha256"] == context.image_sha256 == hashlib.sha256(context.image.read()).hexdigest()
    assert line["image_origin"] == "generated" and line["image_unreliable"] is True

    first, second = line["scenarios"]
    assert [first["scenario_id"], second["scenario_id"]] == [s1.pk, s2.pk]
    assert first["text"] == s1.text and first["origin"] == "seed" and first["text_only_label"] == -1
    assert first["is_canary"] is False
    assert first["n"] == 3
    assert first["mean"] == pytest.approx(13 / 3)
    assert first["sd"] == pytest.approx(math.sqrt(((4 - 13 / 3) ** 2 * 2 + (5 - 13 / 3) ** 2) / 2))
    assert first["sd"] == pytest.approx(0.5773502692)
    assert first["majority_modality"] == "image"
    assert first["modality_votes"] == {"text": 0, "image": 2, "both": 1}
    assert second["mean"] == pytest.approx(2.0) and second["sd"] == pytest.approx(1.0)
    assert second["majority_modality"] == "both"
    assert second["modality_votes"] == {"text": 1, "image": 1, "both": 1}

    j = first["judgments"][0]
    initial = judgments[0][s1.pk]
    assert j == {
        "judgment_id": initial.pk,
        "annotator_id": str(annotators[0].public_id),
        "score": 4,
        "modality": "image",
        "phase": "initial",
        "seconds_spent": 10.0,
        "created_at": initial.created_at.isoformat(timespec="microseconds"),
        "revises": None,
        "initial_score": None,
        "initial_modality": None,
        "model_score_shown": None,
        "import_batch": None,
    }
    assert [x["annotator_id"] for x in first["judgments"]] == [str(a.public_id) for a in annotators]


@pytest.mark.parametrize(
    "scores, modalities, majority",
    [
        ([3, 4], ["text", "image"], "both"),  # text vs image tie
        ([3, 4, 4, 5], ["text", "text", "both", "both"], "both"),  # text vs both tie
        ([1, 2, 2], ["image", "image", "text"], "image"),
        ([5], ["text"], "text"),
    ],
)
def test_majority_modality_takes_most_votes_and_both_on_a_tie(scores, modalities, majority):
    assert aggregate(scores, modalities)["majority_modality"] == majority


def test_sd_is_the_sample_sd_and_null_for_a_single_judgment():
    assert aggregate([1, 2, 3, 4], ["text"] * 4)["sd"] == pytest.approx(math.sqrt(5 / 3))  # ddof=1
    single = aggregate([2], ["both"])
    assert single["n"] == 1 and single["mean"] == 2.0 and single["sd"] is None


def test_scenario_with_one_judgment_has_null_sd_and_is_kept_by_the_sd_filter():
    context, (scenario,), _, _ = rated_context([[(1, "text")]])
    _, lines = records(max_sd=0.0)
    exported = scenario_in(lines, scenario)
    assert exported["n"] == 1 and exported["sd"] is None


def test_only_pseudonymous_annotator_ids_appear_in_every_format():
    context = make_context()
    scenarios = make_scenarios(context, 2)
    annotators = [
        AnnotatorFactory(user=UserFactory(username=f"real-name-{name}")) for name in ("alice", "bob", "carol")
    ]
    for annotator in annotators:
        rate_page(annotator, context, {s.pk: (3, "both") for s in scenarios})
    public_ids = {str(a.public_id) for a in annotators}
    for fmt in FORMATS:
        path = Path(export(fmt).file.path)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            text = json.dumps(pq.read_table(path).to_pylist())
        else:
            text = path.read_text(encoding="utf-8")
        assert "real-name" not in text, fmt
        assert all(pid in text for pid in public_ids), fmt
    _, lines = records()
    seen = {j["annotator_id"] for s in lines[0]["scenarios"] for j in s["judgments"]}
    assert seen == public_ids


# --- split -------------------------------------------------------------------------------------
def test_split_is_a_seeded_sha256_of_the_context_id():
    for context_id in (1, 17, 123456):
        digest = hashlib.sha256(f"seed-x:{context_id}".encode()).digest()
        expected = "test" if int.from_bytes(digest[:8], "big") / 2**64 < 0.25 else "train"
        assert split_for(context_id, seed="seed-x", test_fraction=0.25) == expected


def test_test_fraction_is_near_one_tenth_on_1000_ids():
    tests = sum(split_for(i, seed="morale-split-1", test_fraction=0.1) == "test" for i in range(1, 1001))
    assert 70 <= tests <= 130


def test_raising_the_test_fraction_only_moves_contexts_from_train_to_test():
    ids = range(1, 1001)
    at_10 = {i for i in ids if split_for(i, seed="s", test_fraction=0.1) == "test"}
    at_20 = {i for i in ids if split_for(i, seed="s", test_fraction=0.2) == "test"}
    assert at_10 < at_20


def test_contexts_keep_their_split_when_more_data_is_added():
    first = [rated_context([[(3, "text")]])[0] for _ in range(6)]
    # ids differ between databases (sequences): pick a seed under which both splits occur
    seed = next(
        f"seed-{k}"
        for k in range(100)
        if {split_for(c.pk, seed=f"seed-{k}", test_fraction=0.5) for c in first} == {"train", "test"}
    )
    _, before = records(test_fraction=0.5, split_seed=seed)
    split_before = {line["context_id"]: line["split"] for line in before}
    assert set(split_before) == {c.pk for c in first}
    assert set(split_before.values()) == {"train", "test"}
    for _ in range(6):
        rated_context([[(4, "image")]])
    _, after = records(test_fraction=0.5, split_seed=seed)
    split_after = {line["context_id"]: line["split"] for line in after}
    assert len(split_after) == 12
    assert {cid: split_after[cid] for cid in split_before} == split_before


def test_counts_per_split_add_up():
    for _ in range(8):
        rated_context([[(3, "text"), (3, "both")]])
    record, lines = records(test_fraction=0.5)
    counts = record.counts
    for split in ("train", "test"):
        mine = [line for line in lines if line["split"] == split]
        assert counts["splits"][split]["contexts"] == len(mine)
        assert counts["splits"][split]["judgments"] == 2 * len(mine)
    assert counts["contexts"] == 8 and counts["judgments"] == 16 and counts["annotators"] == 16


# --- filters ----------------------------------------------------------------------------------
def test_judgments_of_screened_out_annotators_are_removed_and_counted():
    context, (scenario,), annotators, _ = rated_context([[(2, "text"), (3, "text"), (4, "image")]])
    Annotator.objects.filter(pk=annotators[2].pk).update(status=Annotator.Status.SCREENED_OUT)
    record, lines = records()
    exported = scenario_in(lines, scenario)
    assert exported["n"] == 2 and exported["mean"] == pytest.approx(2.5)
    assert str(annotators[2].public_id) not in {j["annotator_id"] for j in exported["judgments"]}
    assert record.counts["dropped"]["screened_judgments"] == 1
    assert record.options["include_screened"] is False

    kept, lines = records(include_screened=True)
    assert scenario_in(lines, scenario)["n"] == 3 and kept.counts["dropped"]["screened_judgments"] == 0


def test_canary_scenarios_are_left_out_by_default_with_their_judgments(settings):
    settings.MORALE_CANARY_RATE = 1.0
    context = make_context()
    (scenario,) = make_scenarios(context, 1)
    canary = make_canary(context, low=1, high=2)
    for score in (1, 5):
        rate_page(AnnotatorFactory(), context, {scenario.pk: (3, "text"), canary.pk: (score, "text")})
    record, lines = records()
    assert scenario_in(lines, canary) is None and scenario_in(lines, scenario)["n"] == 2
    assert record.counts["dropped"]["canary_scenarios"] == 1
    assert record.counts["dropped"]["canary_judgments"] == 2


def test_failed_canary_judgments_are_removed_even_when_canaries_are_included(settings):
    settings.MORALE_CANARY_RATE = 1.0
    context = make_context()
    (scenario,) = make_scenarios(context, 1)
    canary = make_canary(context, low=1, high=2)
    passing, failing = AnnotatorFactory(), AnnotatorFactory()
    rate_page(passing, context, {scenario.pk: (3, "text"), canary.pk: (2, "text")})
    rate_page(failing, context, {scenario.pk: (4, "text"), canary.pk: (5, "image")})
    record, lines = records(include_canaries=True)
    exported = scenario_in(lines, canary)
    assert exported["is_canary"] is True
    assert [j["annotator_id"] for j in exported["judgments"]] == [str(passing.public_id)]
    assert record.counts["dropped"]["failed_canary_judgments"] == 1
    assert scenario_in(lines, scenario)["n"] == 2  # failing a canary does not remove other judgments here


def test_a_canary_failed_in_the_reconfirmation_removes_both_judgments_of_that_annotator(settings):
    settings.MORALE_CANARY_RATE = 1.0
    context = make_context()
    (scenario,) = make_scenarios(context, 1)
    canary = make_canary(context, low=1, high=2)
    annotator = AnnotatorFactory()
    predict(canary, 5.0)
    first = rate_page(annotator, context, {scenario.pk: (3, "text"), canary.pk: (1, "text")})[canary.pk]
    services.judgment_reconfirm(
        annotator=annotator, judgment_id=first.pk, score=5, modality="image", page_token=uuid.uuid4()
    )
    record, lines = records(include_canaries=True)
    assert scenario_in(lines, canary) is None
    assert record.counts["dropped"]["failed_canary_judgments"] == 2
    assert record.counts["dropped"]["scenarios_without_judgments"] == 1


def test_scenario_with_sd_above_the_threshold_is_dropped_with_counts():
    context, (wild, calm), _, _ = rated_context(
        [
            [(1, "text"), (5, "image"), (3, "both")],  # sd 2.0
            [(2, "text"), (3, "text"), (3, "image")],  # sd 0.577
        ]
    )
    record, lines = records()
    assert scenario_in(lines, wild) is None and scenario_in(lines, calm)["n"] == 3
    assert record.counts["dropped"]["high_sd_scenarios"] == 1
    assert record.counts["dropped"]["high_sd_judgments"] == 3
    assert record.counts["scenarios"] == 1 and record.counts["judgments"] == 3
    assert record.options["max_sd"] == 1.2

    _, unfiltered = records(max_sd=None)
    assert scenario_in(unfiltered, wild)["sd"] == pytest.approx(2.0)


def test_context_left_without_scenarios_is_dropped_and_counted():
    rated_context([[(1, "text"), (5, "image")]])  # sd 2.83: dropped, and its context with it
    record, lines = records()
    assert lines == []
    assert record.counts["dropped"]["contexts_without_scenarios"] == 1
    assert record.counts["contexts"] == 0


def _reconfirmed_setup():
    context, (scenario,), annotators, judgments = rated_context([[(5, "both"), (4, "both"), (4, "text")]])
    predict(scenario, 1.0)
    initial = judgments[0][scenario.pk]
    revised = services.judgment_reconfirm(
        annotator=annotators[0], judgment_id=initial.pk, score=3, modality="image", page_token=uuid.uuid4()
    )
    return scenario, annotators[0], initial, revised


def test_reconfirmed_source_uses_the_answer_after_the_grounding_check():
    scenario, annotator, initial, revised = _reconfirmed_setup()
    record, lines = records(source="reconfirmed")
    exported = scenario_in(lines, scenario)
    mine = next(j for j in exported["judgments"] if j["annotator_id"] == str(annotator.public_id))
    assert mine["judgment_id"] == revised.pk and mine["phase"] == "reconfirmed"
    assert mine["score"] == 3 and mine["modality"] == "image"
    assert mine["revises"] == initial.pk
    assert mine["initial_score"] == 5 and mine["initial_modality"] == "both"
    assert mine["model_score_shown"] == 1.0
    assert exported["n"] == 3 and exported["mean"] == pytest.approx((3 + 4 + 4) / 3)
    assert exported["modality_votes"] == {"text": 1, "image": 1, "both": 1}
    assert record.counts["source"]["initial_replaced_by_reconfirmation"] == 1


def test_initial_source_uses_first_answers_only():
    scenario, annotator, initial, _ = _reconfirmed_setup()
    record, lines = records(source="initial")
    exported = scenario_in(lines, scenario)
    mine = next(j for j in exported["judgments"] if j["annotator_id"] == str(annotator.public_id))
    assert mine["judgment_id"] == initial.pk and mine["score"] == 5 and mine["phase"] == "initial"
    assert exported["mean"] == pytest.approx((5 + 4 + 4) / 3)
    assert {j["phase"] for j in exported["judgments"]} == {"initial"}
    assert record.counts["source"]["reconfirmed_unused"] == 1
    assert record.options["source"] == "initial"


def test_every_row_read_is_counted_exactly_once(settings):
    settings.MORALE_CANARY_RATE = 1.0
    context = make_context()
    scenarios = make_scenarios(context, 2)
    canary = make_canary(context)
    annotators = [AnnotatorFactory() for _ in range(3)]
    pages = [
        rate_page(annotator, context, {scenarios[0].pk: (a, "text"), scenarios[1].pk: (b, "image"), canary.pk: (1, "text")})
        for annotator, (a, b) in zip(annotators, [(1, 2), (5, 2), (3, 3)])
    ]
    services.judgment_reconfirm(
        annotator=annotators[0], judgment_id=pages[0][scenarios[1].pk].pk, score=3, modality="both",
        page_token=uuid.uuid4(),
    )
    make_context()  # a context without scenarios
    Annotator.objects.filter(pk=annotators[2].pk).update(status=Annotator.Status.SCREENED_OUT)
    c = export().counts
    dropped, source = c["dropped"], c["source"]
    assert c["read"] == {"contexts": 2, "scenarios": 3, "judgments": 10, "aggregates": 0}
    assert c["read"]["judgments"] == c["judgments"] + dropped["canary_judgments"] + dropped["screened_judgments"] + dropped[
        "imported_judgments"] + dropped["failed_canary_judgments"
    ] + dropped["high_sd_judgments"] + source["initial_replaced_by_reconfirmation"] + source["reconfirmed_unused"]
    assert c["read"]["scenarios"] == c["scenarios"] + dropped["canary_scenarios"] + dropped[
        "scenarios_without_judgments"
    ] + dropped["high_sd_scenarios"]
    assert c["read"]["contexts"] == c["contexts"] + dropped["contexts_without_scenarios"]
    assert (c["scenarios"], c["judgments"], dropped["high_sd_scenarios"]) == (1, 2, 1)
    assert (dropped["canary_judgments"], dropped["screened_judgments"], source["initial_replaced_by_reconfirmation"]) == (
        3,
        2,
        1,
    )


# --- files and records -------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_recorded_sha256_and_size_match_the_stored_file(fmt):
    rated_context([[(3, "text"), (4, "both")], [(2, "image"), (2, "image")]])
    record = export(fmt)
    data = Path(record.file.path).read_bytes()
    assert record.status == "done" and record.format == fmt and record.format_version == "morale-export/1"
    assert record.file.name.startswith("exports/") and record.file.name.endswith(f".{fmt}")
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert record.size_bytes == len(data)
    assert record.finished_at is not None and record.error == ""
    assert record.options["high_water"]["judgment_id"] > 0


def test_the_same_data_exported_twice_gives_the_same_bytes():
    rated_context([[(3, "text"), (4, "both")]])
    assert export().sha256 == export().sha256


def test_csv_has_one_row_per_judgment_with_context_and_scenario_columns():
    context, (s1, s2), annotators, _ = rated_context([[(4, "image"), (5, "image")], [(2, "text"), (3, "both")]])
    record = export("csv")
    with open(record.file.path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert len(rows) == 4 == record.counts["judgments"]
    row = rows[0]
    assert row["format"] == "morale-export/1" and row["context_id"] == str(context.pk)
    assert row["scenario_id"] == str(s1.pk) and row["scenario_mean"] == "4.5" and row["votes_image"] == "2"
    assert row["annotator_id"] == str(annotators[0].public_id) and row["score"] == "4"
    assert row["revises"] == "" and row["image_unreliable"] == "false"


def test_csv_cells_that_could_start_a_formula_are_neutralised():
    context = make_context(setting="=HYPERLINK(\"http://evil\")")
    texts = ["+1 for the donation box", "-2+3 cmd|' /C calc'!A0", "@SUM(A1:A9) in the ledger", "plain action"]
    scenarios = [services.scenario_create(context=context, text=t, text_only_label=-1) for t in texts]
    annotator = AnnotatorFactory()
    rate_page(annotator, context, {s.pk: (3, "text") for s in scenarios})
    with open(export("csv", max_sd=None).file.path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["setting"] for r in rows} == {"'=HYPERLINK(\"http://evil\")"}
    assert [r["scenario_text"] for r in rows] == [
        "'+1 for the donation box",
        "'-2+3 cmd|' /C calc'!A0",
        "'@SUM(A1:A9) in the ledger",
        "plain action",
    ]
    assert {r["text_only_label"] for r in rows} == {"-1"}  # numbers stay numbers
    for row in rows:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for k, cell in row.items() if k != "text_only_label")


@pytest.mark.parametrize("text", ["\tcmd", "\rcmd", "=1+1", "+1", "-1", "@x"])
def test_csv_cell_quotes_text_starting_with_a_formula_character(text):
    assert csv_cell(text) == "'" + text


def test_csv_cell_leaves_numbers_booleans_and_plain_text_alone():
    assert [csv_cell(v) for v in (-1, 2.5, True, None, "a-b")] == ["-1", "2.5", "true", "", "a-b"]


def test_parquet_export_loads_with_hugging_face_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    context, (s1, _), annotators, _ = rated_context([[(4, "image"), (5, "image")], [(2, "text"), (3, "both")]])
    record = export("parquet")
    loaded = datasets.load_dataset(
        "parquet", data_files=record.file.path, split="train", cache_dir=str(tmp_path / "hf-cache")
    )
    assert loaded.num_rows == 1
    row = loaded[0]
    assert row["format"] == "morale-export/1" and row["context_id"] == context.pk
    assert row["scenarios"][0]["scenario_id"] == s1.pk and row["scenarios"][0]["mean"] == pytest.approx(4.5)
    assert row["scenarios"][0]["judgments"][0]["annotator_id"] == str(annotators[0].public_id)


def test_parquet_and_jsonl_read_back_as_the_same_records():
    rated_context([[(4, "image"), (5, "image")], [(2, "text"), (3, "both")]])
    rated_context([[(1, "text")]])
    jsonl = list(iter_export(export("jsonl").file.path))
    parquet = list(iter_export(export("parquet").file.path))
    assert len(jsonl) == 2 and parquet == jsonl


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_database_gives_a_valid_empty_export_with_zero_counts(fmt):
    record = export(fmt)
    assert record.status == "done"
    c = record.counts
    assert (c["contexts"], c["scenarios"], c["judgments"], c["annotators"]) == (0, 0, 0, 0)
    assert all(v == 0 for v in c["dropped"].values()) and all(v == 0 for v in c["source"].values())
    assert c["splits"]["test"] == {"contexts": 0, "scenarios": 0, "judgments": 0, "annotators": 0}
    path = Path(record.file.path)
    if fmt == "csv":
        assert path.read_text(encoding="utf-8").splitlines() == [",".join(CSV_COLUMNS)]
    else:
        assert list(iter_export(path)) == []
    assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_failed_export_is_marked_failed_and_leaves_no_file(monkeypatch, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    rated_context([[(3, "text")]])
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_dir))

    def broken(self, record):
        raise OSError("disk full")

    monkeypatch.setattr(JsonlWriter, "write", broken)
    with pytest.raises(ExportFailed, match="disk full") as exc:
        export("jsonl")
    record = DatasetExport.objects.get(pk=exc.value.export.pk)
    assert record.status == "failed" and "OSError: disk full" in record.error
    assert record.file.name == "" and record.sha256 == "" and record.finished_at is not None
    assert list(temp_dir.iterdir()) == []
    assert not (tmp_path / "media" / "exports").exists() or list((tmp_path / "media" / "exports").iterdir()) == []


def test_export_failing_after_the_file_was_stored_removes_the_file(monkeypatch, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    rated_context([[(3, "text")]])
    original_write = jobs.write

    def write_fails_when_done(kind, job, **fields):  # the lifecycle's last write: "done"
        if fields.get("status") == DatasetExport.Status.DONE:
            raise RuntimeError("database went away")
        return original_write(kind, job, **fields)

    monkeypatch.setattr(jobs, "write", write_fails_when_done)
    with pytest.raises(ExportFailed, match="database went away"):
        export("parquet")
    assert DatasetExport.objects.get().status == "failed"
    assert list((tmp_path / "media" / "exports").iterdir()) == []


def test_bad_options_are_refused_before_anything_is_written():
    with pytest.raises(ValueError, match="source"):
        export(source="final")
    for bad_sd in (-1, float("nan"), float("inf")):  # NaN and infinity are not JSON either
        with pytest.raises(ValueError, match="max_sd"):
            export(max_sd=bad_sd)
    with pytest.raises(TypeError, match="unknown export option"):
        export(min_judgments=2)
    with pytest.raises(ValueError, match="format"):
        dataset_export_create(fmt="xlsx")
    assert DatasetExport.objects.count() == 0


def test_query_count_does_not_grow_with_the_data():
    def queries():
        with CaptureQueriesContext(connection) as captured:
            export(chunk_size=1000)
        return len(captured)

    rated_context([[(3, "text"), (3, "both")], [(2, "text"), (2, "both")]])
    small = queries()
    for _ in range(5):
        rated_context([[(3, "text"), (3, "both")], [(2, "text"), (2, "both")]])
    assert queries() == small


def test_judgments_read_in_several_id_batches_give_the_same_file(monkeypatch):
    for _ in range(26):
        rated_context([[(3, "text")], [(4, "both")], [(2, "image")], [(5, "text")]])  # 104 scenarios
    whole = export(chunk_size=1000)
    monkeypatch.setattr(connection.features, "max_query_params", 60)  # 50 scenario ids per query
    with CaptureQueriesContext(connection) as captured:
        batched = export(chunk_size=1000)
    judgment_reads = [q for q in captured if 'FROM "annotation_judgment"' in q["sql"] and "IN (" in q["sql"]]
    assert len(judgment_reads) == 3
    assert batched.sha256 == whole.sha256 and batched.counts["judgments"] == 104


def test_contexts_are_read_in_chunks_of_the_configured_size():
    for _ in range(5):
        rated_context([[(3, "text")]])
    with CaptureQueriesContext(connection) as captured:
        record = export(chunk_size=2)
    context_reads = [q for q in captured if 'FROM "annotation_context"' in q["sql"] and "LIMIT 2" in q["sql"]]
    assert len(context_reads) == 4  # 2 + 2 + 1, then an empty chunk ends the loop
    assert record.counts["contexts"] == 5


# --- reader ------------------------------------------------------------------------------------
def _valid_line():
    rated_context([[(3, "text")]])
    return Path(export().file.path).read_text(encoding="utf-8").rstrip("\n")


def test_reader_refuses_an_unknown_format_version_naming_the_line(tmp_path):
    line = _valid_line()
    newer = line.replace('"format":"morale-export/1"', '"format":"morale-export/2"')
    path = write_lines(tmp_path, [line, newer])
    with pytest.raises(ExportFormatError, match=r"line 2: format 'morale-export/2' is not supported"):
        list(iter_export(path))


def test_reader_refuses_a_foreign_format_naming_the_line(tmp_path):
    path = write_lines(tmp_path, ['{"format": "something-else/3", "context_id": 1}'])
    with pytest.raises(ExportFormatError, match=r"line 1: unknown format 'something-else/3'"):
        list(iter_export(path))


def test_reader_refuses_a_malformed_line_naming_it(tmp_path):
    line = _valid_line()
    path = write_lines(tmp_path, [line, line, '{"format": "morale-export/1", "context_id": '])
    with pytest.raises(ExportFormatError, match=r"line 3: not valid JSON"):
        list(iter_export(path))


@pytest.mark.parametrize(
    "bad, message",
    [
        ('{"context_id": 1}', 'line 1: no "format" key'),
        ('["format", "morale-export/1"]', "line 1: expected a JSON object"),
        ('{"format": "morale-export/1", "context_id": 1}', "line 1: missing key"),
        ("", "line 1: empty line"),
    ],
)
def test_reader_refuses_lines_that_are_not_export_records(tmp_path, bad, message):
    path = write_lines(tmp_path, [bad])
    with pytest.raises(ExportFormatError, match=message):
        list(iter_export(path))


def test_reader_refuses_a_csv_export_with_a_clear_message():
    rated_context([[(3, "text")]])
    with pytest.raises(ExportFormatError, match="CSV export"):
        list(iter_export(export("csv").file.path))


# --- command and admin --------------------------------------------------------------------------
def test_command_prints_path_sha256_and_counts_and_applies_options():
    rated_context([[(1, "text"), (5, "image")]])  # sd 2.83
    out = io.StringIO()
    call_command("export_dataset", "--format", "jsonl", "--source", "initial", "--max-sd", "none", stdout=out)
    record = DatasetExport.objects.get()
    text = out.getvalue()
    assert f"file: {record.file.path}" in text and f"sha256: {record.sha256}" in text
    assert '"judgments": 2' in text
    assert record.options["source"] == "initial" and record.options["max_sd"] is None
    assert record.counts["scenarios"] == 1


def test_command_with_default_options_uses_the_settings(settings):
    settings.MORALE_EXPORT_MAX_SD = 0.5
    rated_context([[(2, "text"), (3, "image")]])  # sd 0.71
    call_command("export_dataset", "--format", "csv", "--include-canaries", stdout=io.StringIO())
    record = DatasetExport.objects.get()
    assert record.options["max_sd"] == 0.5 and record.options["include_canaries"] is True
    assert record.counts["dropped"]["high_sd_scenarios"] == 1


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("staff", "staff@example.org", "pw-for-tests"))
    return client


def test_admin_lists_exports_read_only_and_downloads_the_file(staff_client):
    rated_context([[(3, "text")]])
    record = export()
    assert staff_client.get(reverse("admin:annotation_datasetexport_changelist")).status_code == 200
    page = staff_client.get(reverse("admin:annotation_datasetexport_change", args=[record.pk]))
    assert page.status_code == 200
    url = reverse("admin:annotation_datasetexport_download", args=[record.pk])
    assert url.encode() in page.content
    response = staff_client.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == Path(record.file.path).read_bytes()
    # "Add" is the new-export form (it queues one; see test_research_admin.py); records stay read-only.
    assert staff_client.get(reverse("admin:annotation_datasetexport_add")).status_code == 200
    staff_client.post(reverse("admin:annotation_datasetexport_change", args=[record.pk]), {"status": "failed"})
    record.refresh_from_db()
    assert record.status == DatasetExport.Status.DONE


def test_admin_download_needs_staff(client):
    rated_context([[(3, "text")]])
    record = export()
    response = client.get(reverse("admin:annotation_datasetexport_download", args=[record.pk]))
    assert response.status_code == 302 and "/login/" in response["Location"]

"""Bulk import (annotation.dataset.importing): CSV and JSON Lines, row-numbered errors, all-or-nothing
by default, allow_partial, idempotent re-import, export round trip, image and zip safety,
and the manage.py command."""

import csv
import hashlib
import io
import json
import os
import stat
import zipfile
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.db import transaction

from annotation import services
from annotation.dataset import format as export_format
from annotation.dataset.export.service import dataset_export_create
from annotation.dataset.importing import service
from annotation.dataset.importing.errors import ImportFailed
from annotation.models import Context, ImportBatch, Scenario
from tests.annotation.test_contexts_and_scenarios import bomb_png
from tests.annotation.dataset.helpers import rated_context
from tests.conftest import png_bytes
from tests.factories import make_context

pytestmark = pytest.mark.django_db

HEADER = ["external_id", "image_path", "setting", "scenario_text", "text_only_label", "canary_min_score",
          "canary_max_score", "image_origin", "image_unreliable", "source"]


# --- helpers ----------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    """A media folder of this test's own, so that the stored files can be counted."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def images(tmp_path):
    """A folder with three distinct PNGs."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i, name in enumerate(["street.png", "kitchen.png", "sub/park.png"]):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(png_bytes(color=(40 * i, 90, 160)))
    return folder


def write_csv(tmp_path, rows, header=HEADER, name="contexts.csv") -> Path:
    path = tmp_path / name
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(tmp_path, records, name="contexts.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


GOOD_ROWS = [
    ["street-1", "street.png", "child crossing a street", "holding the child's hand", "1", "", "", "real", "false", "set A"],
    ["street-1", "street.png", "child crossing a street", "letting go of the hand", "-1", "", "", "real", "false", "set A"],
    ["street-1", "street.png", "child crossing a street", "pushing the child", "", "1", "2", "real", "false", "set A"],
    ["kitchen-1", "kitchen.png", "a busy kitchen", "washing hands before cooking", "+1", "", "", "generated", "true", ""],
    ["kitchen-1", "kitchen.png", "a busy kitchen", "licking the ladle", "0", "", "", "generated", "true", ""],
]


def run(data, images, **kwargs) -> ImportBatch:
    return service.import_contexts(data_file=data, images=images, **kwargs)


def errors_of(batch) -> list[tuple]:
    return [(e["row"], e["field"]) for e in batch.errors]


def nothing_stored():
    return Context.objects.count() == 0 and Scenario.objects.count() == 0


def stored_image_files() -> list[Path]:
    root = Path(settings.MEDIA_ROOT) / "contexts"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


# --- happy paths --------------------------------------------------------------------------------
def test_csv_import_creates_contexts_and_scenarios_with_their_fields(tmp_path, images, django_capture_on_commit_callbacks):
    with mock.patch("modelloop.tasks.score_scenarios.apply_async") as send:
        with django_capture_on_commit_callbacks(execute=True):
            batch = run(write_csv(tmp_path, GOOD_ROWS), images)
    assert batch.status == ImportBatch.Status.DONE, batch.errors
    assert batch.format == "csv" and batch.errors == []
    assert batch.file_sha256 == hashlib.sha256((tmp_path / "contexts.csv").read_bytes()).hexdigest()
    c = batch.counts
    assert (c["contexts_created"], c["contexts_present"], c["scenarios_created"], c["scenarios_present"]) == (2, 0, 5, 0)
    assert c["images_stored"] == 2 and c["rows"] == 5 and c["errors"] == 0

    street = Context.objects.get(external_id="street-1")
    assert (street.setting, street.source, street.image_origin, street.image_unreliable) == (
        "child crossing a street", "set A", "real", False)
    assert street.import_batch == batch
    assert street.image_sha256 == hashlib.sha256((images / "street.png").read_bytes()).hexdigest()
    assert Path(street.image.path).read_bytes() == (images / "street.png").read_bytes()
    kitchen = Context.objects.get(external_id="kitchen-1")
    assert (kitchen.image_origin, kitchen.image_unreliable, kitchen.source) == ("generated", True, "")

    labels = dict(Scenario.objects.values_list("text", "text_only_label"))
    assert labels == {"holding the child's hand": 1, "letting go of the hand": -1, "pushing the child": None,
                      "washing hands before cooking": 1, "licking the ladle": 0}
    canary = Scenario.objects.get(text="pushing the child")
    assert (canary.is_canary, canary.canary_min_score, canary.canary_max_score) == (True, 1, 2)
    assert set(Scenario.objects.values_list("origin", flat=True)) == {"seed"}
    # every new scenario is queued for scoring by the current model
    sent = sorted(i for call in send.call_args_list for i in call.kwargs["kwargs"]["scenario_ids"])
    assert sent == sorted(Scenario.objects.values_list("pk", flat=True))


def test_jsonl_import_creates_contexts_with_their_scenarios(tmp_path, images):
    records = [
        {"external_id": "p1", "image_path": "sub/park.png", "setting": "a park at night", "image_origin": "real",
         "image_unreliable": False, "source": "walks",
         "scenarios": [{"text": "jogging with a headlamp", "text_only_label": 1},
                       {"text": "lighting a campfire", "text_only_label": None},
                       {"text": "feeding the ducks bread", "canary_min_score": 2, "canary_max_score": 4}]},
        {"image_path": "street.png", "setting": "a quiet street", "scenarios": [{"text": "sweeping the pavement"}]},
    ]
    batch = run(write_jsonl(tmp_path, records), images)
    assert batch.status == "done", batch.errors
    assert batch.format == "jsonl"
    assert (batch.counts["contexts_created"], batch.counts["scenarios_created"]) == (2, 4)
    park = Context.objects.get(external_id="p1")
    assert park.scenarios.count() == 3 and park.source == "walks"
    ducks = Scenario.objects.get(text="feeding the ducks bread")
    assert (ducks.is_canary, ducks.canary_min_score, ducks.canary_max_score) == (True, 2, 4)
    street = Context.objects.get(setting="a quiet street")
    assert street.external_id == "" and street.image_origin == "real" and not street.image_unreliable


def test_the_same_image_used_by_several_rows_is_stored_once(tmp_path, images):
    rows = [
        ["", "street.png", "a street by day", "crossing at the light", "", "", "", "", "", ""],
        ["", "street.png", "a street by day", "crossing on red", "", "", "", "", "", ""],
        ["", "street.png", "a street at night", "walking home alone", "", "", "", "", "", ""],
        ["x", "./street.png", "a third street", "waving at a taxi", "", "", "", "", "", ""],
    ]
    batch = run(write_csv(tmp_path, rows), images)
    assert batch.status == "done", batch.errors
    assert batch.counts["contexts_created"] == 3 and batch.counts["images_stored"] == 1
    assert len(set(Context.objects.values_list("image", flat=True))) == 1
    assert len(stored_image_files()) == 1


def test_text_only_label_is_optional_and_may_be_left_out_entirely(tmp_path, images):
    header = ["image_path", "setting", "scenario_text"]
    batch = run(write_csv(tmp_path, [["street.png", "a street", "crossing carefully"]], header=header), images)
    assert batch.status == "done", batch.errors
    assert Scenario.objects.get().text_only_label is None


def test_a_bom_and_crlf_line_ends_are_read(tmp_path, images):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfimage_path,setting,scenario_text\r\nstreet.png,a street,\"two\r\nlines\"\r\n")
    batch = run(path, images)
    assert batch.status == "done", batch.errors
    assert Scenario.objects.get().text == "two lines"  # whitespace collapsed as scenario_create does


# --- row-numbered errors; a bad file imports nothing ------------------------------------------------
def test_errors_are_reported_by_row_and_field_and_nothing_is_imported(tmp_path, images):
    rows = [
        GOOD_ROWS[0],                                                                               # row 2
        ["k", "kitchen.png", "", "cooking", "", "", "", "", "", ""],                                # 3 setting
        ["k2", "kitchen.png", "a kitchen", "cooking", "2", "", "", "", "", ""],                     # 4 label
        ["k3", "kitchen.png", "a kitchen", "", "", "", "", "", "", ""],                             # 5 text
        ["k4", "missing.png", "a kitchen", "cooking", "", "", "", "", "", ""],                      # 6 image
        ["k5", "kitchen.png", "a kitchen", "cooking", "", "3", "", "", "", ""],                     # 7 canary
        ["k6", "kitchen.png", "a kitchen", "cooking", "", "4", "2", "", "", ""],                    # 8 canary range
        ["k7", "kitchen.png", "a kitchen", "cooking", "", "", "", "painted", "", ""],               # 9 origin
        ["k8", "kitchen.png", "a kitchen", "cooking", "", "", "", "", "maybe", ""],                 # 10 flag
        ["k9", "kitchen.png", "a kitchen", "x" * (settings.MORALE_SCENARIO_MAX_CHARS + 1), "", "", "", "", "", ""],  # 11
        ["k10", "kitchen.png", "s" * 301, "cooking", "", "", "", "", "", ""],                       # 12 setting length
    ]
    batch = run(write_csv(tmp_path, rows), images)
    assert batch.status == ImportBatch.Status.REJECTED
    assert errors_of(batch) == [
        (3, "setting"), (4, "text_only_label"), (5, "scenario_text"), (6, "image_path"), (7, "canary_max_score"),
        (8, "canary_min_score"), (9, "image_origin"), (10, "image_unreliable"), (11, "scenario_text"), (12, "setting"),
    ]
    messages = {e["row"]: e["message"] for e in batch.errors}
    assert "-1, 0 or +1" in messages[4] and '"2"' in messages[4]
    assert "not in the images folder" in messages[6]
    assert "under 500 characters" in messages[11]
    assert "at most 300 characters" in messages[12]
    assert batch.counts["rows"] == 11 and batch.counts["rows_with_errors"] == 10 and batch.counts["errors"] == 10
    assert nothing_stored()
    assert stored_image_files() == []


def test_a_rejected_file_leaves_what_was_stored_before_untouched(tmp_path, images):
    first = run(write_csv(tmp_path, GOOD_ROWS[:2]), images)
    assert first.status == "done"
    before = list(Scenario.objects.values_list("pk", "text", "text_only_label"))
    bad = GOOD_ROWS + [["z", "street.png", "another", "something", "7", "", "", "", "", ""]]
    batch = run(write_csv(tmp_path, bad, name="bad.csv"), images)
    assert batch.status == "rejected" and errors_of(batch) == [(7, "text_only_label")]
    assert list(Scenario.objects.values_list("pk", "text", "text_only_label")) == before
    assert Context.objects.count() == 1


def test_jsonl_errors_name_the_line_and_the_scenario_field(tmp_path, images):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"image_path": "street.png", "setting": "a street", "scenarios": [{"text": "ok"}]}) + "\n"
        + "{not json\n"
        + "\n"
        + json.dumps({"image_path": "street.png", "setting": "b", "scenarios": [{"text": "fine"}, {"text": "x", "text_only_label": "good"}]}) + "\n"
        + json.dumps({"image_path": "street.png", "setting": "c", "scenario": []}) + "\n"
        + json.dumps(["a list"]) + "\n"
        + json.dumps({"image_path": "../etc/passwd", "setting": "d", "scenarios": [{"text": "y", "txt": 1}]}) + "\n",
        encoding="utf-8",
    )
    batch = run(path, images)
    assert batch.status == "rejected"
    assert errors_of(batch) == [
        (2, None), (4, "scenarios[1].text_only_label"), (5, "scenario"), (5, "scenarios"), (6, None),
        (7, "image_path"), (7, "scenarios[0].txt"),
    ]
    assert "'..'" in batch.errors[5]["message"]
    assert nothing_stored()


def test_the_same_scenario_twice_in_a_file_is_an_error(tmp_path, images):
    rows = [GOOD_ROWS[0], GOOD_ROWS[1], [*GOOD_ROWS[0][:3], "Holding the  child's hand", *GOOD_ROWS[0][4:]]]
    batch = run(write_csv(tmp_path, rows), images)
    assert batch.status == "rejected" and errors_of(batch) == [(4, "scenario_text")]
    assert "row 2" in batch.errors[0]["message"]


def test_rows_of_one_context_must_agree(tmp_path, images):
    rows = [GOOD_ROWS[0], ["street-1", "kitchen.png", "child crossing a road", "another action", "", "", "", "generated", "", ""]]
    batch = run(write_csv(tmp_path, rows), images)
    assert batch.status == "rejected"
    assert errors_of(batch) == [(3, "image_path"), (3, "setting"), (3, "image_origin")]
    assert all("row 2" in e["message"] for e in batch.errors)


def test_unknown_or_missing_columns_reject_the_file(tmp_path, images):
    batch = run(write_csv(tmp_path, [["street.png", "a", "b"]], header=["image_path", "setting", "scenario"]), images)
    assert batch.status == "rejected"
    assert errors_of(batch) == [(1, "scenario")] and "scenario_text" in batch.errors[0]["message"]
    batch = run(write_csv(tmp_path, [["street.png", "a"]], header=["image_path", "setting"], name="b.csv"), images)
    assert errors_of(batch) == [(1, "scenario_text")] and "missing" in batch.errors[0]["message"]


def test_a_csv_export_is_refused_with_a_pointer_to_the_jsonl_export(tmp_path, images):
    path = tmp_path / "export.csv"
    path.write_text(",".join(export_format.CSV_COLUMNS) + "\n", encoding="utf-8")
    batch = run(path, images)
    assert batch.status == "rejected" and "JSONL export" in batch.errors[0]["message"]


def test_a_file_that_is_not_utf8_is_rejected_even_with_allow_partial(tmp_path, images):
    path = tmp_path / "latin1.csv"
    path.write_bytes("image_path,setting,scenario_text\nstreet.png,a street,caf\xe9 owner\n".encode("latin-1"))
    batch = run(path, images, allow_partial=True)
    assert batch.status == "rejected" and errors_of(batch) == [(2, None)]
    assert "UTF-8" in batch.errors[0]["message"]
    assert nothing_stored()


def test_stored_errors_are_capped_and_the_total_kept(tmp_path, images, monkeypatch):
    monkeypatch.setattr(service, "MAX_STORED_ERRORS", 3)
    rows = [[f"e{i}", "street.png", "a", "b", "9", "", "", "", "", ""] for i in range(5)]
    batch = run(write_csv(tmp_path, rows), images)
    assert batch.counts["errors"] == 5 and len(batch.errors) == 4
    assert batch.errors[-1]["message"].startswith("... and 2 more")


# --- allow_partial ------------------------------------------------------------------------------
def test_allow_partial_imports_the_good_rows_and_lists_the_skipped_ones(tmp_path, images):
    rows = [
        GOOD_ROWS[0],
        ["street-1", "street.png", "child crossing a street", "bad label here", "5", "", "", "", "", ""],
        GOOD_ROWS[3],
        ["k", "missing.png", "a kitchen", "cooking", "", "", "", "", "", ""],
    ]
    batch = run(write_csv(tmp_path, rows), images, allow_partial=True)
    assert batch.status == "done"
    assert errors_of(batch) == [(3, "text_only_label"), (5, "image_path")]
    assert batch.counts["rows_with_errors"] == 2
    assert (batch.counts["contexts_created"], batch.counts["scenarios_created"]) == (2, 2)
    assert set(Scenario.objects.values_list("text", flat=True)) == {GOOD_ROWS[0][3], GOOD_ROWS[3][3]}
    # after fixing the file, the rest comes in and nothing is doubled
    fixed = run(write_csv(tmp_path, GOOD_ROWS, name="fixed.csv"), images)
    assert fixed.status == "done"
    assert (fixed.counts["scenarios_created"], fixed.counts["scenarios_present"]) == (3, 2)
    assert Scenario.objects.count() == 5 and Context.objects.count() == 2


def test_allow_partial_skips_a_whole_jsonl_line_with_any_error(tmp_path, images):
    records = [
        {"external_id": "a", "image_path": "street.png", "setting": "a street",
         "scenarios": [{"text": "good one"}, {"text": "bad one", "canary_min_score": 0, "canary_max_score": 2}]},
        {"external_id": "b", "image_path": "kitchen.png", "setting": "a kitchen", "scenarios": [{"text": "cooking"}]},
    ]
    batch = run(write_jsonl(tmp_path, records), images, allow_partial=True)
    assert batch.status == "done" and errors_of(batch) == [(1, "scenarios[1].canary_min_score")]
    assert list(Context.objects.values_list("external_id", flat=True)) == ["b"]


# --- idempotence --------------------------------------------------------------------------------
def test_reimporting_the_same_csv_adds_nothing(tmp_path, images):
    path = write_csv(tmp_path, GOOD_ROWS)
    first = run(path, images)
    files = stored_image_files()
    second = run(path, images)
    assert second.status == "done"
    c = second.counts
    assert (c["contexts_created"], c["contexts_present"], c["scenarios_created"], c["scenarios_present"]) == (0, 2, 0, 5)
    assert c["images_stored"] == 0
    assert Context.objects.count() == 2 and Scenario.objects.count() == 5
    assert stored_image_files() == files
    assert first.file_sha256 == second.file_sha256 and first.pk != second.pk


def test_contexts_without_external_id_match_on_image_and_setting(tmp_path, images):
    existing = services.context_create(
        image_file=ContentFile((images / "street.png").read_bytes(), name="street.png"), setting="a street"
    )
    services.scenario_create(context=existing, text="Crossing carefully")
    rows = [
        ["", "street.png", "a street", "crossing carefully", "", "", "", "", "", ""],   # same text, other case
        ["", "street.png", "a street", "running across", "", "", "", "", "", ""],
        ["", "street.png", "another street", "waving", "", "", "", "", "", ""],       # other setting: new context
    ]
    batch = run(write_csv(tmp_path, rows), images)
    c = batch.counts
    assert (c["contexts_created"], c["contexts_present"], c["scenarios_created"], c["scenarios_present"]) == (1, 1, 2, 1)
    assert sorted(existing.scenarios.values_list("text", flat=True)) == ["Crossing carefully", "running across"]


def test_a_changed_file_that_contradicts_stored_rows_is_an_error_not_an_update(tmp_path, images):
    run(write_csv(tmp_path, GOOD_ROWS), images)
    changed = [list(r) for r in GOOD_ROWS]
    changed[0][4] = "-1"            # label of a stored scenario
    changed[3][2] = "a tidy kitchen"  # setting of a stored external id (both kitchen rows)
    changed[4][2] = "a tidy kitchen"
    batch = run(write_csv(tmp_path, changed, name="changed.csv"), images)
    assert batch.status == "rejected"
    assert errors_of(batch) == [(2, "text_only_label"), (5, "setting"), (6, "setting")]
    assert "already stored" in batch.errors[0]["message"]
    assert Scenario.objects.get(text=GOOD_ROWS[0][3]).text_only_label == 1
    assert Context.objects.get(external_id="kitchen-1").setting == "a busy kitchen"


def exported_study(tmp_path) -> tuple[Path, list, list]:
    """Two rated contexts exported as JSONL; returns (the export's copy, scenarios, contexts) as stored."""
    rated_context([[(4, "image"), (5, "both"), (4, "image")], [(2, "text"), (1, "text"), (2, "both")]],
                  setting="a crowded bus")
    rated_context([[(5, "image"), (5, "image")]], setting="an empty beach", image_origin="generated",
                  image_unreliable=True)
    export = dataset_export_create(fmt="jsonl", max_sd=None)
    copy = tmp_path / "export.jsonl"
    copy.write_bytes(Path(export.file.path).read_bytes())
    assert len(copy.read_text().splitlines()) == 2
    scenarios = sorted(Scenario.objects.values_list("context__setting", "text", "text_only_label"))
    contexts = sorted(Context.objects.values_list("setting", "image_sha256", "image_origin", "image_unreliable"))
    return copy, scenarios, contexts


def test_an_export_reimported_into_its_own_database_adds_nothing(tmp_path):
    path, _, _ = exported_study(tmp_path)
    batch = run(path, settings.MEDIA_ROOT)  # an export's image_path is relative to MEDIA_ROOT
    assert batch.status == "done", batch.errors
    c = batch.counts
    assert (c["contexts_created"], c["contexts_present"], c["scenarios_created"], c["scenarios_present"]) == (0, 2, 0, 3)


class _Rollback(Exception):
    pass


def test_an_export_imports_into_an_empty_database(tmp_path):
    """Export, then roll the database back to empty (the image files stay), then import."""
    try:
        with transaction.atomic():
            path, scenarios, contexts = exported_study(tmp_path)
            raise _Rollback
    except _Rollback:
        pass
    assert nothing_stored()
    batch = run(path, settings.MEDIA_ROOT)
    assert batch.status == "done", batch.errors
    assert (batch.counts["contexts_created"], batch.counts["scenarios_created"]) == (2, 3)
    assert sorted(Scenario.objects.values_list("context__setting", "text", "text_only_label")) == scenarios
    assert sorted(Context.objects.values_list("setting", "image_sha256", "image_origin", "image_unreliable")) == contexts
    again = run(path, settings.MEDIA_ROOT)
    assert (again.counts["contexts_created"], again.counts["scenarios_present"]) == (0, 3)


def test_an_exported_canary_is_matched_but_not_created_without_its_range(tmp_path):
    context = make_context("a library")
    services.scenario_create(context=context, text="shouting", is_canary=True, canary_min_score=1, canary_max_score=2)
    line = {"format": export_format.FORMAT, "context_id": context.pk, "split": "train", "setting": "a library",
            "image_path": context.image.name, "image_sha256": context.image_sha256, "image_origin": "real",
            "image_unreliable": False,
            "scenarios": [{"scenario_id": 1, "text": "shouting", "origin": "seed", "text_only_label": None,
                           "is_canary": True, "n": 0, "mean": 3.0, "sd": None, "majority_modality": "both",
                           "modality_votes": {"text": 0, "image": 0, "both": 0}, "judgments": []}]}
    batch = run(write_jsonl(tmp_path, [line]), settings.MEDIA_ROOT)
    assert batch.status == "done" and batch.counts["scenarios_present"] == 1
    line["scenarios"][0]["text"] = "whispering"
    batch = run(write_jsonl(tmp_path, [line], name="new.jsonl"), settings.MEDIA_ROOT)
    assert batch.status == "rejected" and errors_of(batch) == [(1, "scenarios[0].is_canary")]
    assert "canary_min_score" in batch.errors[0]["message"]


def test_an_export_line_must_be_a_complete_export_line(tmp_path, images):
    line = {"format": "morale-export/1", "image_path": "street.png", "setting": "s", "scenarios": []}
    batch = run(write_jsonl(tmp_path, [line]), images)
    assert batch.status == "rejected" and errors_of(batch) == [(1, "format")]
    assert "missing key" in batch.errors[0]["message"]
    line["format"] = "morale-export/9"
    batch = run(write_jsonl(tmp_path, [line], name="v9.jsonl"), images)
    assert "not supported" in batch.errors[0]["message"]


def test_declared_image_sha256_must_match_the_file(tmp_path, images):
    records = [{"image_path": "street.png", "setting": "s", "image_sha256": "0" * 64, "scenarios": [{"text": "t"}]}]
    batch = run(write_jsonl(tmp_path, records), images)
    assert batch.status == "rejected" and errors_of(batch) == [(1, "image_sha256")]


# --- images: bad files, zip safety --------------------------------------------------------------
@pytest.mark.parametrize(
    "payload,message",
    [
        (b"%PDF-1.4 definitely not an image", "not an image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "not an image"),
        (png_bytes()[:70], "broken or truncated"),
        (b"", "empty"),
        (bomb_png(), "pixels"),
    ],
    ids=["pdf", "svg", "truncated", "empty", "bomb"],
)
def test_bad_images_are_refused_by_row(tmp_path, images, payload, message):
    (images / "bad.png").write_bytes(payload)
    rows = [GOOD_ROWS[0], ["b", "bad.png", "a bad image", "looking at it", "", "", "", "", "", ""]]
    batch = run(write_csv(tmp_path, rows), images)
    assert batch.status == "rejected" and errors_of(batch) == [(3, "image_path")]
    assert message in batch.errors[0]["message"] and "bad.png" in batch.errors[0]["message"]
    assert nothing_stored()


def test_oversized_images_are_refused(tmp_path, images, settings):
    settings.MORALE_MAX_IMAGE_BYTES = 2000
    (images / "big.png").write_bytes(png_bytes(size=(400, 400), color=(1, 2, 3)) + os.urandom(3000))
    rows = [["b", "big.png", "a big image", "looking at it", "", "", "", "", "", ""]]
    batch = run(write_csv(tmp_path, rows), images)
    assert batch.status == "rejected" and "limit" in batch.errors[0]["message"]
    # the same from a zip, whose entry header says how big it is
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(images / "big.png", "big.png")
    batch = run(write_csv(tmp_path, rows, name="z.csv"), archive)
    assert batch.status == "rejected" and "limit" in batch.errors[0]["message"]


def test_images_from_a_zip(tmp_path, images):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in ("street.png", "kitchen.png"):
            z.write(images / name, f"pics/{name}")
    rows = [[r[0], "pics/" + r[1], *r[2:]] for r in GOOD_ROWS]
    batch = run(write_csv(tmp_path, rows), archive)
    assert batch.status == "done", batch.errors
    assert batch.counts["images_stored"] == 2
    assert Context.objects.get(external_id="kitchen-1").image.read() == (images / "kitchen.png").read_bytes()


def test_a_missing_zip_entry_suggests_the_near_name(tmp_path, images):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(images / "street.png", "pics/street.png")
    batch = run(write_csv(tmp_path, [GOOD_ROWS[0]]), archive)
    assert batch.status == "rejected" and 'did you mean "pics/street.png"' in batch.errors[0]["message"]


@pytest.mark.parametrize("entry", ["../evil.png", "/etc/evil.png", "pics/../../evil.png", "C:/evil.png"])
def test_a_zip_with_a_path_traversal_entry_is_refused_whole(tmp_path, images, entry):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(images / "street.png", "street.png")
        z.writestr(zipfile.ZipInfo(entry), png_bytes())
    batch = run(write_csv(tmp_path, [GOOD_ROWS[0]]), archive, allow_partial=True)
    assert batch.status == "rejected"
    assert errors_of(batch) == [(None, "images")] and "unsafe entry" in batch.errors[0]["message"]
    assert nothing_stored() and stored_image_files() == []


def test_a_zip_with_a_symlink_entry_is_refused(tmp_path, images):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(images / "street.png", "street.png")
        link = zipfile.ZipInfo("kitchen.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(link, "/etc/passwd")
    batch = run(write_csv(tmp_path, [GOOD_ROWS[0]]), archive)
    assert batch.status == "rejected" and "symbolic link" in batch.errors[0]["message"]


def test_a_folder_symlink_leading_outside_is_refused(tmp_path, images):
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(color=(9, 9, 9)))
    (images / "link.png").symlink_to(secret)
    rows = [["l", "link.png", "a link", "following it", "", "", "", "", "", ""],
            ["m", "/etc/passwd", "absolute", "reading it", "", "", "", "", "", ""],
            ["n", "..\\secret.png", "dots", "climbing out", "", "", "", "", "", ""]]
    batch = run(write_csv(tmp_path, rows), images)
    assert errors_of(batch) == [(2, "image_path"), (3, "image_path"), (4, "image_path")]
    assert "outside the images folder" in batch.errors[0]["message"]
    assert "relative" in batch.errors[1]["message"] and "'..'" in batch.errors[2]["message"]


def test_images_that_are_neither_folder_nor_zip_are_refused(tmp_path, images):
    not_zip = tmp_path / "images.zip"
    not_zip.write_bytes(b"PK but not really")
    batch = run(write_csv(tmp_path, [GOOD_ROWS[0]]), not_zip)
    assert batch.status == "rejected" and "not a readable zip" in batch.errors[0]["message"]
    batch = run(write_csv(tmp_path, [GOOD_ROWS[0]]), tmp_path / "nowhere")
    assert batch.status == "rejected" and "does not exist" in batch.errors[0]["message"]


# --- unexpected failures roll back ---------------------------------------------------------------
def test_a_failure_while_writing_rolls_back_and_removes_the_stored_images(tmp_path, images, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Scenario.objects, "bulk_create", explode)
    with pytest.raises(ImportFailed, match="disk on fire") as caught:
        run(write_csv(tmp_path, GOOD_ROWS), images)
    batch = ImportBatch.objects.get(pk=caught.value.batch.pk)
    assert batch.status == ImportBatch.Status.FAILED and "disk on fire" in batch.errors[0]["message"]
    assert nothing_stored()
    assert stored_image_files() == []


def test_contexts_made_by_another_import_meanwhile_are_matched_not_duplicated(tmp_path, images, monkeypatch):
    """Validation saw nothing stored; by the time of writing another import stored the same
    context: the write re-reads the matches in its transaction and counts it as present."""
    real_store = service.store_images

    def store_then_race(groups, source, kept):
        stored = real_store(groups, source, kept)
        other = make_context("a busy kitchen")
        Context.objects.filter(pk=other.pk).update(
            external_id="kitchen-1", image_sha256=hashlib.sha256((images / "kitchen.png").read_bytes()).hexdigest(),
            image_origin="generated", image_unreliable=True)
        return stored

    monkeypatch.setattr(service, "store_images", store_then_race)
    batch = run(write_csv(tmp_path, GOOD_ROWS), images)
    assert batch.status == "done", batch.errors
    assert (batch.counts["contexts_created"], batch.counts["contexts_present"]) == (1, 1)
    assert Context.objects.filter(external_id="kitchen-1").count() == 1
    assert batch.counts["images_stored"] == 1
    # the kitchen image this import stored before it saw the other one was removed again
    names = {p.name for p in stored_image_files()}
    assert not any(n.startswith("kitchen") for n in names)


# --- the command ---------------------------------------------------------------------------------
def test_command_prints_counts_and_exits_zero(tmp_path, images):
    out = io.StringIO()
    call_command("import_contexts", str(write_csv(tmp_path, GOOD_ROWS)), "--images", str(images), stdout=out)
    text = out.getvalue()
    assert "status: done" in text and '"contexts_created": 2' in text and '"scenarios_created": 5' in text


def test_command_exits_non_zero_on_a_rejected_file_and_prints_the_row_errors(tmp_path, images):
    bad = GOOD_ROWS + [["z", "street.png", "s", "t", "nope", "", "", "", "", ""]]
    out = io.StringIO()
    with pytest.raises(CommandError, match="rejected: 1 error"):
        call_command("import_contexts", str(write_csv(tmp_path, bad)), "--images", str(images), stdout=out)
    assert "row 7, text_only_label: text_only_label must be -1, 0 or +1" in out.getvalue()
    assert nothing_stored()


def test_command_with_allow_partial_exits_zero_and_lists_the_skipped_rows(tmp_path, images):
    bad = GOOD_ROWS + [["z", "street.png", "s", "t", "nope", "", "", "", "", ""]]
    out = io.StringIO()
    call_command("import_contexts", str(write_csv(tmp_path, bad)), "--images", str(images), "--allow-partial", stdout=out)
    assert "rows skipped (1):" in out.getvalue() and "row 7" in out.getvalue()
    assert Scenario.objects.count() == 5


def database_url() -> str:
    """The URL of the test database, for a manage.py subprocess."""
    from django.db import connection

    d = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{d['NAME']}"
    auth = d["USER"] + (f":{d['PASSWORD']}" if d["PASSWORD"] else "")
    return f"postgres://{auth}@{d['HOST'] or '127.0.0.1'}:{d['PORT'] or 5432}/{d['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_command_exit_status_in_a_real_process(tmp_path, images):
    """The exit status a shell sees: manage.py in a subprocess, on the test database."""
    import subprocess
    import sys

    env = dict(os.environ, DJANGO_SETTINGS_MODULE="morale.settings.test", DATABASE_URL=database_url(),
               MEDIA_ROOT=str(tmp_path / "media"))
    command = [sys.executable, "manage.py", "import_contexts", "--images", str(images)]
    bad = write_csv(tmp_path, [["z", "street.png", "s", "t", "nope", "", "", "", "", ""]], name="bad.csv")
    proc = subprocess.run([*command, str(bad)], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "row 2, text_only_label" in proc.stdout and "rejected" in proc.stderr
    assert ImportBatch.objects.get().status == "rejected" and nothing_stored()


def test_command_reports_a_missing_file(tmp_path, images):
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_contexts", str(tmp_path / "nope.csv"), "--images", str(images), stdout=io.StringIO())

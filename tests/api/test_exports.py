"""Dataset exports over the API: only researchers start, list and download them; the file
comes through the API, never through public media."""

import base64
import hashlib
import json
from pathlib import Path

import pytest

from annotation.dataset.export import service as export_service
from annotation.dataset import format as dataset_format
from annotation.models import DatasetExport

pytestmark = pytest.mark.django_db


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_a_researcher_queues_an_export_that_a_worker_writes(
    world, as_researcher, export_sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = as_researcher.post(
            "/api/v1/exports/",
            {"format": "jsonl", "include_canaries": True, "max_sd": None, "source": "initial"},
            format="json",
        )
    assert response.status_code == 202, response.content
    created = DatasetExport.objects.get(pk=response.json()["id"])
    assert response.json()["status"] == "queued" and response.json()["download_url"] is None
    assert response["Location"].endswith(f"/api/v1/exports/{created.pk}/")
    assert export_sent == [created.pk]  # handed to a worker once the request committed
    assert created.created_by == world.researcher and created.format == "jsonl"
    assert created.options["include_canaries"] is True and created.options["max_sd"] is None
    assert created.options["source"] == "initial"
    assert as_researcher.get(f"/api/v1/exports/{created.pk}/download/").status_code == 409

    export_service.dataset_export_run(created.pk)  # what the worker's task does
    done = as_researcher.get(f"/api/v1/exports/{created.pk}/").json()
    assert done["status"] == "done" and done["download_url"].endswith(f"/api/v1/exports/{created.pk}/download/")
    content = body(as_researcher.get(done["download_url"]))
    assert hashlib.sha256(content).hexdigest() == done["sha256"]
    assert [json.loads(line)["context_id"] for line in content.splitlines()] == [world.context.pk]


def test_an_export_of_selected_contexts(world, as_researcher, export_sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = as_researcher.post(
            "/api/v1/exports/", {"format": "jsonl", "context_ids": [world.other_context.pk]}, format="json"
        )
    assert response.status_code == 202
    export_service.dataset_export_run(export_sent[0])
    created = DatasetExport.objects.get(pk=export_sent[0])
    assert created.status == "done" and created.options["context_ids"] == [world.other_context.pk]
    assert Path(created.file.path).read_bytes() == b""  # nobody rated that one yet


def test_unset_options_come_from_the_settings(world, as_researcher, settings):
    settings.MORALE_EXPORT_MAX_SD = 0.75
    response = as_researcher.post("/api/v1/exports/", {"format": "csv"}, format="json")
    created = DatasetExport.objects.get(pk=response.json()["id"])
    assert created.options["max_sd"] == 0.75 and created.options["source"] == settings.MORALE_EXPORT_SOURCE


def test_deployment_settings_cannot_be_overridden_per_export(world, as_researcher, settings):
    response = as_researcher.post(
        "/api/v1/exports/", {"format": "jsonl", "split_seed": "attacker", "test_fraction": 1.0, "chunk_size": 1}, format="json"
    )
    created = DatasetExport.objects.get(pk=response.json()["id"])
    assert created.options["split_seed"] == settings.MORALE_EXPORT_SPLIT_SEED
    assert created.options["test_fraction"] == settings.MORALE_EXPORT_TEST_FRACTION


@pytest.mark.parametrize(
    "data",
    [{}, {"format": "xml"}, {"format": "jsonl", "source": "everything"}, {"format": "jsonl", "max_sd": -1},
     {"format": "jsonl", "include_screened": "perhaps"}, {"format": "jsonl", "context_ids": []},
     {"format": "jsonl", "context_ids": [0]}, {"format": "jsonl", "context_ids": "1,2"}],
)
def test_bad_export_requests_are_400_and_write_nothing(world, as_researcher, data):
    before = DatasetExport.objects.count()
    assert as_researcher.post("/api/v1/exports/", data, format="json").status_code == 400
    assert DatasetExport.objects.count() == before


@pytest.mark.parametrize("who", ["as_alice", "anonymous"])
def test_annotators_and_anonymous_callers_cannot_export(world, request, who):
    before = DatasetExport.objects.count()
    response = request.getfixturevalue(who).post("/api/v1/exports/", {"format": "jsonl"}, format="json")
    assert response.status_code == (403 if who == "as_alice" else 401)
    assert DatasetExport.objects.count() == before


def test_a_researcher_downloads_the_file_with_its_hash(world, as_researcher):
    export = world.export
    response = as_researcher.get(f"/api/v1/exports/{export.pk}/download/")
    assert response.status_code == 200
    content = body(response)
    assert content == Path(export.file.path).read_bytes() and content
    assert hashlib.sha256(content).hexdigest() == export.sha256
    digest = base64.b64encode(hashlib.sha256(content).digest()).decode()
    assert response["Repr-Digest"] == f"sha-256=:{digest}:"
    assert response["Content-Type"] == "application/jsonl"
    assert response["Content-Disposition"].startswith("attachment;")
    assert "no-store" in response["Cache-Control"]
    assert export.counts["judgments"] > 0
    first = json.loads(content.splitlines()[0])
    assert first["format"] == "morale-export/1" and first["context_id"] == world.context.pk


def test_the_download_ignores_the_accept_header(world, as_researcher):
    response = as_researcher.get(f"/api/v1/exports/{world.export.pk}/download/", HTTP_ACCEPT="application/octet-stream")
    assert response.status_code == 200 and body(response) == Path(world.export.file.path).read_bytes()


@pytest.mark.parametrize("who", ["as_alice", "anonymous"])
def test_annotators_and_anonymous_callers_cannot_download(world, request, who):
    response = request.getfixturevalue(who).get(f"/api/v1/exports/{world.export.pk}/download/")
    assert response.status_code == (403 if who == "as_alice" else 401)
    assert world.export.sha256 not in response.content.decode()


def test_export_files_are_not_served_as_public_media(world, client):
    assert world.export.file.name.startswith("exports/")
    assert client.get(f"/media/{world.export.file.name}").status_code == 404


@pytest.mark.parametrize("dots", ["..", "%2e%2e", "..%2f", "%2E%2E%2F"])
def test_export_files_cannot_be_reached_through_the_context_image_url(world, client, dots):
    sep = "" if dots.endswith("%2f") else "/"
    assert client.get(f"/media/contexts/{dots}{sep}{world.export.file.name}").status_code == 404


def test_an_unfinished_or_failed_export_has_nothing_to_download(world, as_researcher):
    running = DatasetExport.objects.create(format="jsonl", format_version=dataset_format.FORMAT, status="running")
    failed = DatasetExport.objects.create(format="jsonl", format_version=dataset_format.FORMAT, status="failed", error="boom")
    for export in (running, failed):
        response = as_researcher.get(f"/api/v1/exports/{export.pk}/download/")
        assert response.status_code == 409
        assert as_researcher.get(f"/api/v1/exports/{export.pk}/").json()["download_url"] is None


def test_a_done_export_whose_file_is_gone_is_a_404(world, as_researcher):
    Path(world.export.file.path).unlink()
    assert as_researcher.get(f"/api/v1/exports/{world.export.pk}/download/").status_code == 404


def test_researchers_list_and_filter_exports(world, as_researcher):
    csv_export = export_service.dataset_export_create(fmt="csv")
    everything = as_researcher.get("/api/v1/exports/").json()
    assert [e["id"] for e in everything["results"]] == [csv_export.pk, world.export.pk]
    assert [e["id"] for e in as_researcher.get("/api/v1/exports/", {"file_format": "csv"}).json()["results"]] == [csv_export.pk]
    listed = everything["results"][1]
    assert listed["created_by"] == world.researcher.username and listed["sha256"] == world.export.sha256
    assert listed["counts"] == world.export.counts


def test_a_superuser_may_download_too(world, as_superuser):
    assert as_superuser.get(f"/api/v1/exports/{world.export.pk}/download/").status_code == 200

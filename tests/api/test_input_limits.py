"""What the API refuses, sent as it arrives (raw query strings, raw JSON): integers past
the database's range or a filter's bounds, over-long id lists, control characters, values
of the wrong JSON type; a 400 with a message, never a 500 and never a silent default.
And who reads the schema and the docs: any logged-in user, each the part they may use."""

import json

import pytest
from django.test import RequestFactory

from annotation.models import DatasetExport
from training.models import TrainingRun

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db

HUGE = "10974411365519338934108160"  # the value: past 64 bits


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/judgments/?context={HUGE}",
        f"/api/v1/scenarios/?context={HUGE}",
        f"/api/v1/assignments/?context={HUGE}",
        f"/api/v1/contexts/?import_batch={HUGE}",
        f"/api/v1/judgments/?model_version=-{HUGE}",
        "/api/v1/predictions/?scenario=9223372036854775808",
        "/api/v1/training-runs/?export=0",
        "/api/v1/judgments/?score=6",
        "/api/v1/judgments/?score=0",
        "/api/v1/judgments/?scenario=1.0",
        "/api/v1/judgments/?scenario=1e3",
        "/api/v1/judgments/?scenario=%201",
        f"/api/v1/judgments/?offset={HUGE}",
        "/api/v1/judgments/?offset=-1",
        "/api/v1/judgments/?limit=0",
        "/api/v1/judgments/?limit=ten",
        "/api/v1/scenarios/?is_canary=yes",
        "/api/v1/model-versions/?is_current=1",
    ],
)
def test_integer_and_boolean_filters_out_of_range_or_malformed_are_a_400_that_says_why(world, as_researcher, path):
    response = as_researcher.get(path)
    assert response.status_code == 400, (path, response.content)
    name = path.split("?")[1].split("=")[0]
    assert name in response.json() and response.json()[name][0]


def test_the_largest_id_the_database_holds_is_a_valid_filter(world, as_researcher):
    assert as_researcher.get("/api/v1/judgments/?context=9223372036854775807").json()["results"] == []
    assert as_researcher.get("/api/v1/judgments/?score=5&context=").status_code == 200  # empty: not given


def test_a_limit_above_the_maximum_is_capped_not_refused(world, as_researcher):
    page = as_researcher.get(f"/api/v1/judgments/?limit={HUGE[:18]}").json()
    assert len(page["results"]) == 7


def test_an_out_of_range_id_in_the_path_is_a_404(world, as_researcher):
    for path in (f"/api/v1/contexts/{HUGE}/", "/api/v1/contexts/-1/", "/api/v1/contexts/1.5/", "/api/v1/contexts/abc/"):
        response = as_researcher.get(path)
        assert response.status_code == 404 and response["Content-Type"] == "application/json" and response.json()["detail"], path


@pytest.mark.parametrize(
    "path", ["/api/v1/contexts/?external_id=a%00b", "/api/v1/model-versions/?scorer=x%1Bq",
             "/api/v1/model-versions/?name=%7F", "/api/v1/judgments/?annotator=%00"],
)
def test_a_control_character_in_a_query_parameter_is_a_400(world, as_researcher, path):
    response = as_researcher.get(path)
    assert response.status_code == 400
    assert "control character" in json.dumps(response.json())


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


@pytest.mark.parametrize(
    "body",
    [
        {"format": "jsonl", "context_ids": []},
        {"format": "jsonl", "context_ids": [int(HUGE)]},
        {"format": "jsonl", "context_ids": [0]},
        {"format": "jsonl", "context_ids": ["1"]},
        {"format": "jsonl", "context_ids": list(range(1, 100_002))},
        {"format": "jsonl", "include_canaries": "true"},
        {"format": "jsonl", "include_canaries": 1},
        {"format": "jsonl", "max_sd": "1.2"},
        {"format": "jsonl\u0000"},
        {"format": ["jsonl"]},
    ],
    ids=["empty-ids", "huge-id", "zero-id", "string-id", "too-many-ids", "string-bool", "int-bool", "string-number",
         "nul-format", "list-format"],
)
def test_bad_export_options_are_a_400_and_queue_nothing(world, as_researcher, export_sent, body):
    before = DatasetExport.objects.count()
    response = post(as_researcher, "/api/v1/exports/", body)
    assert response.status_code == 400, response.content
    assert DatasetExport.objects.count() == before and export_sent == []


def test_the_longest_id_list_is_accepted(world, as_researcher, export_sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(as_researcher, "/api/v1/exports/", {"format": "jsonl", "context_ids": list(range(1, 100_001))})
    assert response.status_code == 202 and len(export_sent) == 1


@pytest.mark.parametrize(
    "config, field",
    [
        ({"mode": "lora", "vlm_path": "/models/qwen\u0000"}, "vlm_path"),
        ({"mode": "lora", "vlm_path": "/models/\u001b[2Jqwen"}, "vlm_path"),
        ({"mode": "lora", "vlm_path": 5}, "vlm_path"),
        ({"mode": "lora"}, "non_field_errors"),
        ({"vlm_path": "/models/qwen"}, "non_field_errors"),
        ({"loss": "listmle\u0000"}, "loss"),
        ({"epochs": 5.0}, "epochs"),
        ({"seed": -1}, "seed"),
        ({"hidden": 0}, "hidden"),
        ({"dropout": 1.0}, "dropout"),
        ({"gradient_checkpointing": "false"}, "gradient_checkpointing"),
        ({"le\u0000arning_rate": 0.1}, "le\u0000arning_rate"),
    ],
)
def test_bad_training_configs_are_a_400_naming_the_field(world, as_researcher, config, field):
    response = post(as_researcher, "/api/v1/training-runs/", {"config": config})
    assert response.status_code == 400, response.content
    assert field in response.json()["config"]
    assert not TrainingRun.objects.exists()


def test_the_api_config_names_every_trainconfig_field_and_nothing_else():
    from dataclasses import fields

    from training.api import TrainConfigSerializer
    from training.train import TrainConfig

    assert set(TrainConfigSerializer().fields) == {f.name for f in fields(TrainConfig)}


def test_a_lora_config_with_a_path_is_accepted(world, as_researcher, monkeypatch):
    from training import tasks

    monkeypatch.setattr(tasks.execute_run, "apply_async", lambda *a, **k: None)
    response = post(as_researcher, "/api/v1/training-runs/", {"config": {"mode": "lora", "vlm_path": "/models/qwen"}})
    assert response.status_code == 202, response.content
    assert TrainingRun.objects.get().config["vlm_path"] == "/models/qwen"


def test_the_export_id_must_be_a_json_integer(world, as_researcher):
    for export in (str(world.export.pk), float(world.export.pk), True, int(HUGE)):
        assert post(as_researcher, "/api/v1/training-runs/", {"export": export}).status_code == 400, export


def test_a_form_post_to_the_api_is_415(world, as_researcher):
    assert as_researcher.post("/api/v1/exports/", {"format": "jsonl"}, format="multipart").status_code == 415


# --- who reads the schema and the docs ----------------------------------------------------
RESEARCH_ONLY_PATHS = {"/api/v1/exports/", "/api/v1/training-runs/", "/api/v1/predictions/", "/api/v1/model-versions/"}


def served_schema(client) -> dict:
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def test_anonymous_visitors_get_neither_the_schema_nor_the_docs(world, client):
    for url in ("/api/schema/", "/api/docs/", "/api/docs/redoc/"):
        assert client.get(url).status_code == 401, url


def test_an_annotators_schema_holds_only_what_annotators_may_use(world, client):
    assert client.login(request=RequestFactory().get("/"), username=world.alice.user.username, password=PASSWORD)
    schema = served_schema(client)
    assert not RESEARCH_ONLY_PATHS & set(schema["paths"])
    assert "/api/v1/judgments/" in schema["paths"]
    judgment = schema["components"]["schemas"]["Judgment"]["properties"]
    assert not {"model_score", "delta", "canary_passed", "model_version"} & set(judgment)
    params = {p["name"] for p in schema["paths"]["/api/v1/judgments/"]["get"]["parameters"]}
    assert "model_version" not in params and "canary_passed" not in params and "context" in params
    assert client.get("/api/docs/").status_code == 200


def test_a_researchers_schema_holds_every_operation_with_its_error_answers(world, as_researcher):
    schema = served_schema(as_researcher)
    assert RESEARCH_ONLY_PATHS <= set(schema["paths"])
    judgment = schema["components"]["schemas"]["Judgment"]["properties"]
    assert {"model_score", "delta", "canary_passed", "model_version"} <= set(judgment)
    listing = schema["paths"]["/api/v1/judgments/"]["get"]
    assert {"200", "400", "401"} <= set(listing["responses"])
    assert all(p.get("allowEmptyValue") for p in listing["parameters"])
    context = next(p for p in listing["parameters"] if p["name"] == "context")
    assert context["schema"] == {"type": "integer", "format": "int64", "minimum": 1, "maximum": 2**63 - 1}
    score = next(p for p in listing["parameters"] if p["name"] == "score")
    assert (score["schema"]["minimum"], score["schema"]["maximum"]) == (1, 5)
    create = schema["paths"]["/api/v1/exports/"]["post"]
    assert {"202", "400", "401", "403", "415"} <= set(create["responses"])
    assert set(create["requestBody"]["content"]) == {"application/json"}
    download = schema["paths"]["/api/v1/exports/{id}/download/"]["get"]["responses"]
    assert set(download["200"]["content"]) == {"application/jsonl", "text/csv", "application/vnd.apache.parquet"}
    assert "404" in download and "409" in download

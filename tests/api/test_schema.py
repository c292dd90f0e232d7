"""The OpenAPI schema: generates without a warning and validates (the CI check
``manage.py spectacular --validate --fail-on-warn``), and documents who sees what."""

import pytest
import yaml
from django.core.management import call_command
from django.test import RequestFactory

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db

RESOURCES = ["contexts", "scenarios", "assignments", "judgments", "predictions", "model-versions", "exports", "training-runs"]


@pytest.fixture
def schema(tmp_path, settings) -> dict:
    out = tmp_path / "schema.yaml"
    # raises CommandError on any warning or on a schema that does not validate
    call_command("spectacular", "--validate", "--fail-on-warn", "--urlconf", settings.ROOT_URLCONF, "--file", str(out))
    return yaml.safe_load(out.read_text())


def test_the_schema_generates_without_warnings_and_validates(schema):
    assert schema["openapi"].startswith("3.")
    for resource in RESOURCES:
        assert f"/api/v1/{resource}/" in schema["paths"], resource
        assert f"/api/v1/{resource}/{{id}}/" in schema["paths"], resource
    assert "/api/v1/exports/{id}/download/" in schema["paths"]
    assert set(schema["components"]["securitySchemes"]) == {"tokenAuth", "cookieAuth"}


def test_researcher_only_fields_are_optional_and_marked_in_the_schema(schema):
    judgment = schema["components"]["schemas"]["Judgment"]
    for name in ("model_score", "delta", "canary_passed", "model_version"):
        assert name not in judgment["required"]
        assert "Researchers only" in judgment["properties"][name]["description"]
    assert {"id", "annotator", "score", "modality", "phase"} <= set(judgment["required"])
    assert "is_canary" not in schema["components"]["schemas"]["Scenario"]["required"]


def test_only_allow_listed_filters_are_documented(schema):
    params = {p["name"] for p in schema["paths"]["/api/v1/judgments/"]["get"]["parameters"]}
    assert params == {
        "annotator", "scenario", "context", "assignment", "phase", "modality", "score", "created_after",
        "created_before", "ordering", "limit", "offset", "model_version", "canary_passed",
    }
    ordering = next(p for p in schema["paths"]["/api/v1/judgments/"]["get"]["parameters"] if p["name"] == "ordering")
    assert set(ordering["schema"]["items"]["enum"]) == {
        f"{sign}{field}" for sign in ("", "-") for field in ("id", "created_at", "score", "delta", "seconds_spent")
    }


def test_creation_endpoints_take_only_the_documented_choices(schema):
    paths = schema["paths"]
    assert set(paths["/api/v1/exports/"]) == {"get", "post"}
    assert set(paths["/api/v1/training-runs/"]) == {"get", "post"}
    for read_only in ("contexts", "scenarios", "assignments", "judgments", "predictions", "model-versions"):
        assert set(paths[f"/api/v1/{read_only}/"]) == {"get"}
        assert set(paths[f"/api/v1/{read_only}/{{id}}/"]) == {"get"}
    export_request = schema["components"]["schemas"]["ExportCreateRequest"]["properties"]
    assert set(export_request) == {"format", "source", "max_sd", "include_screened", "include_canaries",
                                   "include_imported", "context_ids"}


def test_the_served_schema_and_docs_need_a_login_and_work_with_one(world, client):
    assert client.get("/api/schema/").status_code == 401
    assert client.login(request=RequestFactory().get("/"), username=world.alice.user.username, password=PASSWORD)
    served = client.get("/api/schema/")
    assert served.status_code == 200 and b"/api/v1/judgments/" in served.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
    # The Swagger UI files come from this server (drf-spectacular-sidecar), never a CDN.
    page = docs.content.decode()
    assert "cdn.jsdelivr" not in page and "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js").status_code == 200
    assert client.get("/api/docs/redoc/").status_code == 200

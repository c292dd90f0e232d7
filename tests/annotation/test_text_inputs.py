"""Every text input refuses NUL and other control characters with a clear error and stores
nothing (morale.text, one rule): the add-scenario form, the services, the admin forms,
import cells (CSV and JSON Lines) and the crowd entry. Tabs and line breaks are normalised.

These run in both passes of scripts/test.sh: on PostgreSQL a NUL that got through would be
a 500 (it refuses NUL in text); on SQLite it would be stored.
"""

import csv
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation import services
from annotation.dataset.importing import service as import_service
from annotation.models import Annotator, Context, Scenario
from tests.annotation.test_views import form_for, open_page
from tests.conftest import png_bytes
from tests.factories import AnnotatorFactory, make_context, make_scenarios, predict

pytestmark = pytest.mark.django_db

CONTROL = "U+0000 (NUL)"


def add_page(client) -> str:
    """An annotator who agreed with the model on every scenario: the add-scenario page's URL."""
    for scenario in make_scenarios(make_context(), 3):
        predict(scenario, 3.0)
    rate_url = open_page(client)
    _, data = form_for(client.get(rate_url).content.decode())
    return client.post(rate_url, data).url  # the submit redirects straight to the next step


@pytest.mark.parametrize("text, shown", [("a\x00b", CONTROL), ("look\x1b[2J", "U+001B (ESCAPE)"), ("x\x7f", "U+007F (DELETE)")])
def test_a_control_character_on_the_add_scenario_form_is_refused_and_nothing_stored(client, text, shown):
    annotator = AnnotatorFactory()
    client.force_login(annotator.user)
    url = add_page(client)
    before = Scenario.objects.count()
    response = client.post(url, {"action": "add", "text": text})
    assert response.status_code == 400
    assert f"The scenario contains a control character, {shown}" in response.content.decode()
    assert Scenario.objects.count() == before


def test_the_issues_request_text_a_percent_00_b_is_a_400_not_a_500_or_stored(client):
    annotator = AnnotatorFactory()
    client.force_login(annotator.user)
    url = add_page(client)
    before = Scenario.objects.count()
    response = client.post(url, "action=add&text=a%00b", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400 and "control character" in response.content.decode()
    assert Scenario.objects.count() == before


def test_tabs_and_line_breaks_in_a_new_scenario_become_single_spaces(client):
    annotator = AnnotatorFactory()
    client.force_login(annotator.user)
    url = add_page(client)
    assert client.post(url, {"action": "add", "text": "holding\tthe\r\nchild's\nhand"}).status_code == 302
    assert Scenario.objects.filter(author=annotator).get().text == "holding the child's hand"


@pytest.mark.parametrize("field", ["setting", "source"])
def test_a_context_with_a_control_character_in_its_setting_or_source_is_refused(field):
    texts = {"setting": "a street", "source": "set A", field: "bad\x00text"}
    with pytest.raises(ValidationError, match=f"The {field} contains a control character, U\\+0000"):
        services.context_create(image_file=ContentFile(png_bytes(), name="x.png"), **texts)
    assert not Context.objects.exists()


def test_a_settings_tab_becomes_a_space():
    context = services.context_create(image_file=ContentFile(png_bytes(), name="x.png"), setting="a\tstreet ")
    assert context.setting == "a street"


def test_a_scenario_made_by_a_service_refuses_control_characters():
    context = make_context()
    with pytest.raises(ValidationError, match="control character"):
        services.scenario_create(context=context, text="holding\x08 hands")
    assert not Scenario.objects.exists()


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("staff", "staff@example.org", "pw-for-tests"))
    return client


def test_the_admin_context_form_shows_the_error_instead_of_failing(staff_client):
    response = staff_client.post(
        reverse("admin:annotation_context_add"),
        {
            "image": SimpleUploadedFile("kitchen.png", png_bytes(), content_type="image/png"),
            "setting": "a kitchen\x1b", "source": "", "image_origin": "real", "is_active": "on",
            "scenarios-TOTAL_FORMS": "0", "scenarios-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200  # the form again, with the error
    assert "The setting contains a control character, U+001B (ESCAPE)" in response.content.decode()
    assert not Context.objects.exists()


def test_editing_a_scenario_in_the_admin_refuses_control_characters(staff_client):
    scenario = make_scenarios(make_context(), 1)[0]
    response = staff_client.post(
        reverse("admin:annotation_scenario_change", args=[scenario.pk]),
        {"text": "holding \x07 hands", "context": scenario.context_id, "origin": scenario.origin},
    )
    assert response.status_code == 200 and "U+0007 (BEL)" in response.content.decode()
    scenario.refresh_from_db()
    assert "\x07" not in scenario.text


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "street.png").write_bytes(png_bytes())
    return folder


def test_an_import_cell_with_a_control_character_is_a_row_error_and_nothing_is_imported(tmp_path, images):
    path = tmp_path / "contexts.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["external_id", "image_path", "setting", "scenario_text", "source"])
        writer.writerow(["s-1", "street.png", "a street", "holding hands", "set A"])
        writer.writerow(["s-2", "street.png", "a street\x00", "waving", "set A"])
        writer.writerow(["s-3", "street.png", "a street", "running\x1b", "set A"])
        writer.writerow(["s-4\x00", "street.png", "a street", "walking", "set\x7fA"])
        writer.writerow(["s-5", "street\x00.png", "a street", "sitting", ""])
    batch = import_service.import_contexts(data_file=path, images=images)
    assert batch.status == "rejected"
    found = {(e["row"], e["field"]) for e in batch.errors if "control character" in e["message"]}
    assert found == {(3, "setting"), (4, "scenario_text"), (5, "external_id"), (5, "source"), (6, "image_path")}
    assert not Context.objects.exists() and not Scenario.objects.exists()


def test_a_json_lines_value_with_a_control_character_is_refused_and_a_tab_normalised(tmp_path, images):
    path = tmp_path / "contexts.jsonl"
    records = [
        {"external_id": "k-1", "image_path": "street.png", "setting": "a\tstreet", "scenarios": [{"text": "waving\nhello"}]},
        {"external_id": "k-2", "image_path": "street.png", "setting": "a street", "scenarios": [{"text": "bad\u0000"}]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    rejected = import_service.import_contexts(data_file=path, images=images)
    assert [(e["row"], e["field"]) for e in rejected.errors] == [(2, "scenarios[0].text")]
    assert "U+0000 (NUL)" in rejected.errors[0]["message"]
    done = import_service.import_contexts(data_file=path, images=images, allow_partial=True)
    assert done.status == "done"
    context = Context.objects.get()
    assert context.setting == "a street" and context.scenarios.get().text == "waving hello"


def test_a_crowd_id_with_a_control_character_is_refused_with_a_reason(client, settings):
    settings.MORALE_CROWD_PLATFORMS = ["prolific"]
    response = client.get(reverse("annotation:crowd_entry") + "?PROLIFIC_PID=5f2b9c1e8a7d%00e0012345678")
    assert "The participant id in the link contains a control character, U+0000 (NUL)" in response.content.decode()
    response = client.get(reverse("annotation:crowd_entry") + "?PROLIFIC_PID=5f2b9c1e8a7d%0Ae0012345678")
    assert "control character" in response.content.decode()
    assert not Annotator.objects.exists()


def test_an_unknown_json_key_holding_nul_or_a_lone_surrogate_is_a_stored_row_error(tmp_path, images):
    """The error names the key, escaped: stored as it came, PostgreSQL would refuse the
    batch's errors and the import would fail instead of saying what is wrong."""
    path = tmp_path / "contexts.jsonl"
    line = '{"image_path": "street.png", "setting": "a street", "scenarios": [], "ba\\u0000d": 1, "odd\\ud800": 2}\n'
    path.write_text(line, encoding="utf-8")
    batch = import_service.import_contexts(data_file=path, images=images)
    batch.refresh_from_db()
    assert batch.status == "rejected"
    assert sorted(e["field"] for e in batch.errors) == ["ba\\u0000d", "odd\\ud800"]
    assert not Context.objects.exists()

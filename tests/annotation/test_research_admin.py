"""The admin for researchers: the researcher role, lists, filters, bulk actions, background exports."""

import json
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotation import services, tasks
from annotation.dataset.export import service as export_service
from annotation.models import Annotator, AnnotatorScreening, DatasetExport, Scenario
from morale.roles import RESEARCHER_GROUP, is_researcher, researcher_make
from modelloop.models import Prediction
from tests.annotation.dataset.helpers import rate_page, rated_context
from tests.factories import AnnotatorFactory, current_version, make_context, make_scenarios, predict

pytestmark = pytest.mark.django_db


@pytest.fixture
def researcher(django_user_model):
    user = django_user_model.objects.create_user("rita", password="pw-for-tests-123")
    researcher_make(user)
    return user


@pytest.fixture
def researcher_client(client, researcher):
    client.force_login(researcher)
    return client


def changelist(client, model, **query):
    return client.get(reverse(f"admin:annotation_{model}_changelist"), query)


def act(client, model, action, ids):
    return client.post(
        reverse(f"admin:annotation_{model}_changelist"),
        {"action": action, "_selected_action": [str(i) for i in ids]},
        follow=True,
    )


# --- the role -------------------------------------------------------------------------------
def test_researcher_role_is_staff_plus_group_and_not_superuser(researcher):
    assert researcher.is_staff and not researcher.is_superuser
    assert researcher.groups.filter(name=RESEARCHER_GROUP).exists()
    assert is_researcher(researcher)
    researcher = get_user_model().objects.get(pk=researcher.pk)  # fresh permission cache
    assert researcher.has_perm("annotation.view_judgment")
    assert researcher.has_perm("annotation.change_annotator")
    assert researcher.has_perm("annotation.add_datasetexport")
    assert researcher.has_perm("training.add_trainingrun")
    assert not researcher.has_perm("annotation.delete_context")
    assert not researcher.has_perm("auth.change_user")


def test_becoming_a_researcher_replaces_an_earlier_answer_on_the_same_user_object(django_user_model):
    """is_researcher remembers its answer on the user object (one query per request)."""
    user = django_user_model.objects.create_user("rolf")
    assert not is_researcher(user)
    researcher_make(user)
    assert is_researcher(user)


def test_annotators_never_reach_the_admin(client):
    annotator = AnnotatorFactory()
    assert not is_researcher(annotator.user)
    client.force_login(annotator.user)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and "/admin/login/" in response.url
    assert client.get(reverse("admin:annotation_judgment_changelist")).status_code == 302


def test_add_researcher_command(django_user_model):
    call_command("add_researcher", "nina", "--create")
    nina = django_user_model.objects.get(username="nina")
    assert is_researcher(nina) and not nina.has_usable_password()
    with pytest.raises(CommandError, match="No user"):
        call_command("add_researcher", "nobody")


def test_add_researcher_refuses_an_annotator_with_judgments():
    _, _, annotators, _ = rated_context([[(3, "text")]])
    with pytest.raises(CommandError, match="annotator with judgments"):
        call_command("add_researcher", annotators[0].user.username)
    assert not annotators[0].user.is_staff


# --- lists ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model",
    ["context", "scenario", "judgment", "disagreement", "annotator", "datasetexport", "assignment"],
)
def test_every_research_list_opens_for_a_researcher(researcher_client, model):
    rated_context([[(1, "text"), (5, "image")]])
    assert changelist(researcher_client, model).status_code == 200


def test_scenario_text_is_escaped_in_the_admin(researcher_client):
    context = make_context()
    services.scenario_create(context=context, text="<script>alert(1)</script> steals")
    page = changelist(researcher_client, "scenario").content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_disagreements_lists_only_initial_judgments_far_from_the_model(researcher_client):
    context = make_context()
    near, far = make_scenarios(context, 2)
    predict(near, 3.2)
    predict(far, 4.9)
    annotator = AnnotatorFactory()

    rate_page(annotator, context, {near.pk: (3, "text"), far.pk: (1, "image")})
    page = changelist(researcher_client, "disagreement").content.decode()
    assert f"#{far.pk}" in page or far.text[:40] in page
    assert near.text[:40] not in page


def test_annotator_list_filters_by_quality_flags(researcher_client):
    flagged, clean = AnnotatorFactory(), AnnotatorFactory()
    Annotator.objects.filter(pk=flagged.pk).update(
        quality={"flags": [{"code": "too_fast", "message": "60% of answers under 2 s"}], "stats": {}}
    )
    Annotator.objects.filter(pk=clean.pk).update(quality={"flags": [], "stats": {}})
    page = changelist(researcher_client, "annotator", flagged="yes").content.decode()
    assert str(flagged.public_id) in page and str(clean.public_id) not in page
    assert "60% of answers under 2 s" in page
    page = changelist(researcher_client, "annotator", flagged="no").content.decode()
    assert str(clean.public_id) in page and str(flagged.public_id) not in page


# --- actions --------------------------------------------------------------------------------
def test_screen_out_and_reinstate_actions_record_who_and_why(researcher_client, researcher):
    annotator = AnnotatorFactory()
    Annotator.objects.filter(pk=annotator.pk).update(
        quality={"flags": [{"code": "low_correlation", "message": "r = 0.05 with item means"}]}
    )
    act(researcher_client, "annotator", "screen_out", [annotator.pk])
    annotator.refresh_from_db()
    assert annotator.status == Annotator.Status.SCREENED_OUT
    screening = AnnotatorScreening.objects.get(annotator=annotator)
    assert screening.decided_by == researcher and screening.action == "screen_out"
    assert "r = 0.05 with item means" in str(screening.reasons)
    # Screening twice adds nothing to the history.
    act(researcher_client, "annotator", "screen_out", [annotator.pk])
    assert AnnotatorScreening.objects.filter(annotator=annotator).count() == 1
    act(researcher_client, "annotator", "reinstate", [annotator.pk])
    annotator.refresh_from_db()
    assert annotator.status == Annotator.Status.ACTIVE
    assert AnnotatorScreening.objects.filter(annotator=annotator).count() == 2


def test_status_cannot_be_edited_outside_the_actions(researcher_client):
    annotator = AnnotatorFactory()
    researcher_client.post(reverse("admin:annotation_annotator_change", args=[annotator.pk]), {"status": "screened_out"})
    annotator.refresh_from_db()
    assert annotator.status == Annotator.Status.ACTIVE


def test_retire_action_stops_giving_out_the_scenario_and_keeps_judgments(researcher_client):
    context, scenarios, annotators, _ = rated_context([[(3, "text")], [(4, "image")]])
    act(researcher_client, "scenario", "retire", [scenarios[0].pk])
    scenarios[0].refresh_from_db()
    assert scenarios[0].is_retired and scenarios[0].judgments.count() == 1
    newcomer = AnnotatorFactory()
    page = services.assignment_get_or_create(annotator=newcomer)
    assert page is not None and scenarios[0].pk not in [i.scenario_id for i in page.items.all()]
    act(researcher_client, "scenario", "unretire", [scenarios[0].pk])
    assert not Scenario.objects.get(pk=scenarios[0].pk).is_retired


def test_rescore_action_drops_the_current_predictions_and_queues_them(researcher_client, django_capture_on_commit_callbacks):
    context = make_context()
    first, second = make_scenarios(context, 2)
    version = current_version()
    predict(first, 2.0, version)
    predict(second, 4.0, version)
    with mock.patch("modelloop.tasks.score_scenarios.apply_async") as send:
        with django_capture_on_commit_callbacks(execute=True):
            act(researcher_client, "scenario", "rescore", [first.pk])
    assert not Prediction.objects.filter(model_version=version, scenario=first).exists()
    assert Prediction.objects.filter(model_version=version, scenario=second).exists()
    sent = [call.kwargs["kwargs"]["scenario_ids"] for call in send.call_args_list]
    assert [first.pk] in sent


def test_export_selected_contexts_queues_a_background_export(researcher_client, django_capture_on_commit_callbacks):
    first = rated_context([[(3, "text")]], setting="one")[0]
    rated_context([[(4, "text")]], setting="two")
    with mock.patch.object(tasks.export_dataset, "delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            response = act(researcher_client, "context", "export_selected", [first.pk])
    export = DatasetExport.objects.get()
    assert export.status == DatasetExport.Status.QUEUED and export.options["context_ids"] == [first.pk]
    delay.assert_called_once_with(export.pk)
    assert "follow its progress" in response.content.decode()
    # The worker writes it; the admin then links the file.
    export_service.dataset_export_run(export.pk)
    page = researcher_client.get(reverse("admin:annotation_datasetexport_change", args=[export.pk])).content.decode()
    assert reverse("admin:annotation_datasetexport_download", args=[export.pk]) in page
    download = researcher_client.get(reverse("admin:annotation_datasetexport_download", args=[export.pk]))
    lines = b"".join(download.streaming_content).decode().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["context_id"] == first.pk


def test_new_export_form_queues_with_the_chosen_filters(researcher_client, django_capture_on_commit_callbacks):
    assert researcher_client.get(reverse("admin:annotation_datasetexport_add")).status_code == 200
    with mock.patch.object(tasks.export_dataset, "delay"):
        with django_capture_on_commit_callbacks(execute=True):
            response = researcher_client.post(
                reverse("admin:annotation_datasetexport_add"),
                {"format": "csv", "source": "initial", "max_sd": "", "include_screened": "on"},
            )
    export = DatasetExport.objects.get()
    assert response.status_code == 302
    assert export.format == "csv" and export.options["source"] == "initial"
    assert export.options["max_sd"] is None and export.options["include_screened"] is True
    # While it waits, the pages reload themselves to show progress.
    page = researcher_client.get(reverse("admin:annotation_datasetexport_changelist")).content.decode()
    assert 'http-equiv="refresh"' in page and "waiting for a worker" in page


def test_new_export_form_refuses_bad_filters(researcher_client):
    response = researcher_client.post(reverse("admin:annotation_datasetexport_add"), {"format": "xlsx", "max_sd": "-1"})
    assert response.status_code == 200 and not DatasetExport.objects.exists()
    assert "Select a valid choice" in response.content.decode()


def test_a_staff_user_without_the_role_cannot_export(client, django_user_model):
    user = django_user_model.objects.create_user("intern", password="pw-for-tests-123", is_staff=True)
    client.force_login(user)
    assert client.get(reverse("admin:annotation_datasetexport_add")).status_code == 403
    context = make_context()
    response = client.post(
        reverse("admin:annotation_context_changelist"), {"action": "export_selected", "_selected_action": [context.pk]}
    )
    assert response.status_code == 403
    assert not DatasetExport.objects.exists()

"""The admin for researchers: the researcher role, lists, filters, bulk actions, background exports."""

import json
import uuid
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotation import services, tasks
from annotation.dataset.export import service as export_service
from annotation.models import (
    Annotator,
    AnnotatorScreening,
    DatasetExport,
    ItemReport,
    Judgment,
    PageComment,
    Scenario,
)
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
    [
        "context", "scenario", "judgment", "disagreement", "annotator", "datasetexport", "assignment",
        "writtenscenario", "reportedscenario", "itemreport", "pagecomment",
    ],
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


# --- numbers and the grounding-check answer (issue 15, item 7) -------------------------------------
def test_scores_show_two_decimals_in_judgments_disagreements_and_predictions(researcher_client):
    context = make_context()
    far = make_scenarios(context, 1)[0]
    predict(far, 3.69447660446167)
    rate_page(AnnotatorFactory(), context, {far.pk: (1, "text")})
    for model in ("judgment", "disagreement"):
        page = changelist(researcher_client, model).content.decode()
        assert "3.69" in page and "2.69" in page and "3.6944" not in page, model
    page = researcher_client.get(reverse("admin:modelloop_prediction_changelist")).content.decode()
    assert "3.69" in page and "3.6944" not in page


@pytest.mark.parametrize(
    ("first", "again", "shown"),
    [
        ((4, "text"), (4, "text"), "kept 4"),
        ((4, "text"), (4, "both"), "kept 4, modality text -&gt; both"),
        ((4, "text"), (2, "text"), "revised 4 -&gt; 2"),
        ((4, "image"), (1, "both"), "revised 4 -&gt; 1, modality image -&gt; both"),
        ((4, "text"), None, "not answered yet"),
    ],
)
def test_at_the_check_says_what_was_kept_and_what_changed(researcher_client, first, again, shown):
    context = make_context()
    scenario = make_scenarios(context, 1)[0]
    predict(scenario, 1.5)
    annotator = AnnotatorFactory()
    initial = rate_page(annotator, context, {scenario.pk: first})[scenario.pk]
    if again is not None:
        services.judgment_reconfirm(
            annotator=annotator, judgment_id=initial.pk, score=again[0], modality=again[1], page_token=uuid.uuid4()
        )
    page = changelist(researcher_client, "disagreement").content.decode()
    assert f'<td class="field-check_answer">{shown}</td>' in page


# --- researchers land on the dashboard (issue 15, item 7) ------------------------------------------
def test_a_researcher_signs_in_to_the_dashboard_and_an_annotator_to_the_work(client, researcher):
    response = client.post(reverse("login"), {"username": "rita", "password": "pw-for-tests-123"})
    assert response.status_code == 302 and response.url == reverse("annotation:dashboard")
    client.logout()
    response = client.post(reverse("login") + "?next=/admin/", {"username": "rita", "password": "pw-for-tests-123"})
    assert response.url == "/admin/"  # an explicit next still wins
    client.logout()
    annotator = AnnotatorFactory()
    annotator.user.set_password("pw-for-tests-456")
    annotator.user.save()
    response = client.post(reverse("login"), {"username": annotator.user.username, "password": "pw-for-tests-456"})
    assert response.url == reverse("annotation:start")


# --- review queues (issue 15, items 5 and 6) --------------------------------------------------------
def written(context, annotator, text, status=Scenario.Review.PENDING):
    return services.scenario_create(
        context=context, text=text, origin=Scenario.Origin.ANNOTATOR, author=annotator, review_status=status
    )


def test_written_scenarios_queue_shows_the_held_ones_first_and_approves_in_bulk(researcher_client, researcher):
    context = make_context("a dog outside a shop")
    author = AnnotatorFactory()
    held = [written(context, author, f"held {i}") for i in range(2)]
    in_pool = written(context, author, "already accepted", status=Scenario.Review.ACCEPTED)
    page = changelist(researcher_client, "writtenscenario").content.decode()
    assert "held 0" in page and "held 1" in page and "already accepted" not in page  # default: waiting
    assert "already accepted" in changelist(researcher_client, "writtenscenario", review="all").content.decode()
    assert context.image.url in page  # the image, to judge whether the text fits it

    response = act(researcher_client, "writtenscenario", "approve", [s.pk for s in held])
    assert "2 scenario(s) approved" in response.content.decode()
    assert set(Scenario.objects.filter(pk__in=[s.pk for s in held]).values_list("review_status", "reviewed_by")) == {
        ("accepted", researcher.pk)
    }
    in_pool.refresh_from_db()
    assert in_pool.reviewed_by is None


def test_reject_asks_for_a_reason_then_rejects_every_selected_scenario(researcher_client):
    context = make_context()
    author = AnnotatorFactory()
    held = [written(context, author, f"unrelated {i}") for i in range(2)]
    url = reverse("admin:annotation_writtenscenario_changelist")
    ids = [str(s.pk) for s in held]
    asked = researcher_client.post(url, {"action": "reject", "_selected_action": ids})
    assert asked.status_code == 200 and "Reject 2 scenarios" in asked.content.decode()
    assert set(Scenario.objects.values_list("review_status", flat=True)) == {"pending"}

    empty = researcher_client.post(url, {"action": "reject", "_selected_action": ids, "apply": "yes", "reason": "  "})
    assert empty.status_code == 200 and "This field is required" in empty.content.decode()
    assert set(Scenario.objects.values_list("review_status", flat=True)) == {"pending"}

    done = researcher_client.post(
        url, {"action": "reject", "_selected_action": ids, "apply": "yes", "reason": "not about the image"}, follow=True
    )
    assert "2 scenario(s) rejected" in done.content.decode()
    assert set(Scenario.objects.values_list("review_status", "review_note")) == {("rejected", "not about the image")}


def test_reported_queue_counts_reports_filters_by_reason_and_keeps_or_retires(researcher_client, researcher):
    context = make_context()
    broken, rude = make_scenarios(context, 2)
    for annotator, reason, scenario in [
        (AnnotatorFactory(), "broken_image", broken),
        (AnnotatorFactory(), "broken_image", broken),
        (AnnotatorFactory(), "offensive", rude),
    ]:
        page = services.assignment_get_or_create(annotator=annotator)
        services.item_report(annotator=annotator, assignment_id=page.pk, scenario_id=scenario.pk, reason=reason)
    page = changelist(researcher_client, "reportedscenario").content.decode()
    assert broken.text in page and rude.text not in page  # default: the held ones
    everything = changelist(researcher_client, "reportedscenario", decision="all").content.decode()
    assert "broken image x2" in everything and "offensive x1" in everything and ">2 (2)<" in everything
    by_reason = changelist(researcher_client, "reportedscenario", decision="all", reason="offensive").content.decode()
    assert rude.text in by_reason and broken.text not in by_reason
    scenario_list = changelist(researcher_client, "scenario", reported="yes").content.decode()
    assert broken.text in scenario_list and rude.text in scenario_list
    reports = changelist(researcher_client, "itemreport", reason__exact="broken_image").content.decode()
    assert reports.count('class="field-reason"') == 2

    act(researcher_client, "reportedscenario", "keep", [broken.pk])
    broken.refresh_from_db()
    assert broken.review_status == "accepted" and not broken.is_retired
    response = researcher_client.post(  # on the list of every reported scenario (one report does not hold it)
        reverse("admin:annotation_reportedscenario_changelist") + "?decision=all",
        {"action": "retire", "_selected_action": [rude.pk]},
        follow=True,
    )
    assert "1 scenario(s) retired" in response.content.decode()
    rude.refresh_from_db()
    assert rude.is_retired
    assert set(ItemReport.objects.values_list("scenario_id", "decision", "decided_by")) == {
        (broken.pk, "kept", researcher.pk), (rude.pk, "retired", researcher.pk)
    }


def test_review_rows_are_read_only_and_need_the_right_to_change_scenarios(client, researcher_client, django_user_model):
    context = make_context()
    held = written(context, AnnotatorFactory(), "a held one")
    # The change page shows the row but cannot edit it: decisions go through the actions.
    change = researcher_client.get(reverse("admin:annotation_writtenscenario_change", args=[held.pk])).content.decode()
    assert 'name="review_status"' not in change
    assert researcher_client.get(reverse("admin:annotation_scenario_change", args=[held.pk])).status_code == 200
    assert 'name="review_status"' not in researcher_client.get(
        reverse("admin:annotation_scenario_change", args=[held.pk])
    ).content.decode()
    viewer = django_user_model.objects.create_user("viewer", password="pw-for-tests-123", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_writtenscenario"))
    client.force_login(viewer)
    page = client.get(reverse("admin:annotation_writtenscenario_changelist")).content.decode()
    assert "a held one" in page and 'value="approve"' not in page
    client.post(
        reverse("admin:annotation_writtenscenario_changelist"), {"action": "approve", "_selected_action": [held.pk]}
    )
    held.refresh_from_db()
    assert held.review_status == "pending"


def test_page_comments_show_in_the_admin_and_on_their_page(researcher_client):
    context = make_context()
    scenarios = make_scenarios(context, 2)
    annotator = AnnotatorFactory()
    page = services.assignment_get_or_create(annotator=annotator)
    services.assignment_submit_ratings(
        annotator=annotator,
        assignment_id=page.pk,
        ratings=[services.RatingInput(s.pk, 3, "text") for s in scenarios],
        page_token=uuid.uuid4(),
        comment="scenario 2 <b>repeats</b> scenario 1",
    )
    listed = changelist(researcher_client, "pagecomment").content.decode()
    assert "scenario 2 &lt;b&gt;repeats&lt;/b&gt; scenario 1" in listed
    detail = researcher_client.get(reverse("admin:annotation_assignment_change", args=[page.pk])).content.decode()
    assert "repeats" in detail
    assert PageComment.objects.count() == 1 and Judgment.objects.count() == 2

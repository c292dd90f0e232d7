"""Who reads what: every resource's list and detail for anonymous callers, annotators and
researchers. Someone else's row is a 404 (the queryset never holds it: no IDOR), and a
researcher-only resource is a 403 whatever the id (so the answer tells nothing about ids)."""

import json

import pytest
from django.contrib.auth.models import Group

from annotation import services
from annotation.models import Annotator, Judgment
from morale.roles import RESEARCHER_GROUP
from modelloop.models import ModelVersion, Prediction
from tests.factories import UserFactory
from training import services as training_services
from training.models import TrainingRun

from .conftest import ids, token_client

pytestmark = pytest.mark.django_db

RESOURCES = ["contexts", "scenarios", "assignments", "judgments", "predictions", "model-versions", "exports", "training-runs"]
RESEARCHER_ONLY = ["predictions", "model-versions", "exports", "training-runs"]
MISSING = 987654


def url(resource: str, pk=None) -> str:
    return f"/api/v1/{resource}/" + ("" if pk is None else f"{pk}/")


@pytest.fixture
def run(world) -> TrainingRun:
    return training_services.training_run_queue(triggered_by=TrainingRun.Trigger.COMMAND)


def some_id(world, resource: str, run=None) -> int:
    return {
        "contexts": world.context.pk,
        "scenarios": world.scenarios[0].pk,
        "assignments": world.alice_assignment.pk,
        "judgments": world.alice_judgments[0].pk,
        "predictions": Prediction.objects.first().pk,
        "model-versions": ModelVersion.objects.get(is_current=True).pk,
        "exports": world.export.pk,
        "training-runs": run.pk if run else MISSING,
    }[resource]


# --- anonymous ---------------------------------------------------------------------------------
@pytest.mark.parametrize("resource", RESOURCES)
def test_anonymous_callers_get_401_with_a_token_challenge_on_list_and_detail(world, anonymous, resource):
    for path in (url(resource), url(resource, some_id(world, resource))):
        response = anonymous.get(path)
        assert response.status_code == 401, path
        assert response["WWW-Authenticate"] == "Token"
        assert "results" not in response.json()


def test_the_api_root_and_the_schema_need_a_login_too(anonymous):
    for path in ("/api/v1/", "/api/schema/", "/api/docs/"):
        assert anonymous.get(path).status_code == 401, path


# --- annotators: their own rows ----------------------------------------------------------------
def test_an_annotator_lists_only_their_own_judgments(world, as_alice, as_bob):
    assert ids(as_alice.get(url("judgments"))) == [j.pk for j in world.alice_judgments]
    assert ids(as_bob.get(url("judgments"))) == [j.pk for j in world.bob_judgments]


def test_an_annotator_gets_404_for_every_other_annotators_judgment(world, as_alice):
    for judgment in world.bob_judgments:
        response = as_alice.get(url("judgments", judgment.pk))
        assert response.status_code == 404
        # the same answer as for an id that does not exist: nothing to tell them apart
        assert response.json() == as_alice.get(url("judgments", MISSING)).json()
    assert as_alice.get(url("judgments", world.alice_judgments[0].pk)).status_code == 200


def test_an_annotator_lists_and_reads_only_their_own_assignments(world, as_alice):
    assert ids(as_alice.get(url("assignments"))) == [world.alice_assignment.pk]
    assert as_alice.get(url("assignments", world.bob_assignment.pk)).status_code == 404
    mine = as_alice.get(url("assignments", world.alice_assignment.pk)).json()
    assert mine["annotator"] == str(world.alice.public_id)
    assert sorted(mine["scenarios"]) == sorted(s.pk for s in world.scenarios)


def test_an_annotator_sees_only_the_contexts_of_their_own_assignments(world, as_alice):
    assert ids(as_alice.get(url("contexts"))) == [world.context.pk]
    assert as_alice.get(url("contexts", world.other_context.pk)).status_code == 404


def test_an_annotator_sees_the_scenarios_of_their_pages_not_the_canary_nor_other_contexts(world, as_alice):
    assert ids(as_alice.get(url("scenarios"))) == sorted(s.pk for s in world.scenarios)
    for hidden in [world.canary, *world.other_scenarios]:
        assert as_alice.get(url("scenarios", hidden.pk)).status_code == 404


def test_an_annotator_sees_a_scenario_they_wrote_and_others_do_not(world, as_alice, as_bob):
    written = services.scenario_add_by_annotator(
        annotator=world.alice, assignment_id=world.alice_assignment.pk, text="waving at the driver to stop"
    )
    assert written.pk in ids(as_alice.get(url("scenarios")))
    assert as_alice.get(url("scenarios", written.pk)).status_code == 200
    assert as_bob.get(url("scenarios", written.pk)).status_code == 404


@pytest.mark.parametrize("resource", RESEARCHER_ONLY)
def test_an_annotator_gets_the_same_403_for_researcher_only_resources_whatever_the_id(world, run, as_alice, resource):
    listed = as_alice.get(url(resource))
    existing = as_alice.get(url(resource, some_id(world, resource, run)))
    missing = as_alice.get(url(resource, MISSING))
    assert listed.status_code == existing.status_code == missing.status_code == 403
    assert existing.json() == missing.json()
    assert "results" not in listed.json()


def test_an_annotator_never_receives_researcher_fields(world, as_alice):
    judgment = as_alice.get(url("judgments", world.alice_judgments[0].pk)).json()
    assert set(judgment) == {
        "id", "annotator", "scenario", "context", "assignment", "score", "modality", "phase", "revises",
        "seconds_spent", "created_at",
    }
    assert judgment["annotator"] == str(world.alice.public_id) and judgment["context"] == world.context.pk
    scenario = as_alice.get(url("scenarios", world.scenarios[0].pk)).json()
    assert set(scenario) == {"id", "context", "text", "origin", "created_at"}
    context = as_alice.get(url("contexts", world.context.pk)).json()
    assert set(context) == {"id", "image", "setting", "image_origin", "image_unreliable", "created_at"}


def test_a_user_who_is_neither_annotator_nor_researcher_sees_nothing_and_gets_no_annotator_row(world):
    client = token_client(UserFactory())
    for resource in ["contexts", "scenarios", "assignments", "judgments"]:
        assert ids(client.get(url(resource))) == [], resource
    for resource in RESEARCHER_ONLY:
        assert client.get(url(resource)).status_code == 403
    assert Annotator.objects.count() == 2


def test_an_annotator_in_another_group_is_still_only_an_annotator(world):
    world.alice.user.groups.add(Group.objects.create(name="researchers-in-training"))
    client = token_client(world.alice.user)
    assert ids(client.get(url("judgments"))) == [j.pk for j in world.alice_judgments]
    assert client.get(url("exports")).status_code == 403


# --- researchers: everything -------------------------------------------------------------------
@pytest.mark.parametrize("who", ["as_researcher", "as_superuser"])
def test_researchers_read_every_row_of_every_resource(world, run, request, who):
    client = request.getfixturevalue(who)
    everyone = sorted(j.pk for j in [*world.alice_judgments, *world.bob_judgments])
    assert ids(client.get(url("judgments"))) == everyone
    assert ids(client.get(url("assignments"))) == sorted([world.alice_assignment.pk, world.bob_assignment.pk], reverse=True)
    assert ids(client.get(url("contexts"))) == [world.context.pk, world.other_context.pk]
    assert ids(client.get(url("scenarios"))) == sorted(
        s.pk for s in [*world.scenarios, world.canary, *world.other_scenarios]
    )
    assert ids(client.get(url("predictions"))) == sorted(Prediction.objects.values_list("pk", flat=True), reverse=True)
    assert ids(client.get(url("model-versions"))) == sorted(ModelVersion.objects.values_list("pk", flat=True), reverse=True)
    assert ids(client.get(url("exports"))) == [world.export.pk]
    assert ids(client.get(url("training-runs"))) == [run.pk]
    for resource in RESOURCES:
        assert client.get(url(resource, some_id(world, resource, run))).status_code == 200, resource


def test_researchers_get_the_researcher_fields(world, as_researcher):
    judgment = as_researcher.get(url("judgments", world.bob_judgments[0].pk)).json()
    initial = world.bob_judgments[0]
    assert judgment["model_score"] == 4.0 and judgment["delta"] == 1.0
    assert judgment["model_version"] == initial.model_version_id and judgment["canary_passed"] is None
    canary = as_researcher.get(url("scenarios", world.canary.pk)).json()
    assert canary["is_canary"] is True and (canary["canary_min_score"], canary["canary_max_score"]) == (1, 2)
    context = as_researcher.get(url("contexts", world.context.pk)).json()
    assert context["image_sha256"] == world.context.image_sha256 and context["judgment_count"] == 6


def test_a_researcher_who_leaves_the_group_is_no_longer_one(world):
    world.researcher.groups.clear()
    assert token_client(world.researcher).get(url("exports")).status_code == 403


@pytest.mark.parametrize("staff", [True, False])
def test_staff_outside_the_group_and_group_members_who_are_not_staff_are_not_researchers(world, staff):
    """morale.roles decides: staff users in the group "researcher" (and superusers)."""
    user = UserFactory(is_staff=staff)
    if not staff:
        user.groups.add(Group.objects.get(name=RESEARCHER_GROUP))
    client = token_client(user)
    for resource in RESEARCHER_ONLY:
        assert client.get(url(resource)).status_code == 403
    assert ids(client.get(url("judgments"))) == []


def test_the_training_run_list_leaves_out_the_log_and_the_detail_has_it(world, run, as_researcher):
    listed = as_researcher.get(url("training-runs")).json()["results"][0]
    assert "log" not in listed and listed["status"] == "queued"
    assert "log" in as_researcher.get(url("training-runs", run.pk)).json()


# --- pseudonyms ------------------------------------------------------------------------------
@pytest.mark.parametrize("who", ["as_researcher", "as_alice"])
def test_no_response_names_an_annotator_only_their_public_id(world, run, request, who):
    client = request.getfixturevalue(who)
    usernames = [world.alice.user.username, world.bob.user.username]
    for resource in RESOURCES:
        response = client.get(url(resource))
        if response.status_code == 403:
            continue
        text = response.content.decode()
        assert not any(json.dumps(name) in text for name in usernames), resource
    judgments = client.get(url("judgments")).json()["results"]
    assert {j["annotator"] for j in judgments} <= {str(world.alice.public_id), str(world.bob.public_id)}


# --- read-only resources ---------------------------------------------------------------------
@pytest.mark.parametrize("resource", ["contexts", "scenarios", "assignments", "judgments", "predictions", "model-versions"])
def test_read_only_resources_refuse_every_write_even_from_researchers(world, as_researcher, resource):
    pk = some_id(world, resource)
    before = Judgment.objects.count()
    assert as_researcher.post(url(resource), {}, format="json").status_code == 405
    for method in ("put", "patch", "delete"):
        assert getattr(as_researcher, method)(url(resource, pk), {"score": 1}, format="json").status_code == 405
    assert Judgment.objects.count() == before
    assert Judgment.objects.get(pk=world.alice_judgments[0].pk).score == 4

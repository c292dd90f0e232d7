"""Fixtures of the API tests: a small world made through the services, and API clients.

The world: one context rated by two annotators (alice agrees with the model, bob disagrees
and answers a grounding check), a canary and a second context nobody has been assigned
yet, a researcher (morale.roles: staff in the group "researcher"), a superuser, and one
finished JSONL export.
"""

import uuid
from dataclasses import dataclass

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation import services
from morale import roles
from annotation.dataset.export import service as export_service
from annotation.models import Annotator, Assignment, Context, DatasetExport, Judgment, Scenario
from tests.factories import AnnotatorFactory, UserFactory, make_canary, make_context, make_scenarios, predict

PASSWORD = "pw-for-tests"  # tests.factories.UserFactory's


def rate_page(annotator: Annotator, score: int, modality: str = "both") -> tuple[Assignment, list[Judgment]]:
    """The annotator gets their next page and rates every scenario on it `score`."""
    assignment = services.assignment_get_or_create(annotator=annotator)
    judgments = services.assignment_submit_ratings(
        annotator=annotator,
        assignment_id=assignment.pk,
        ratings=[services.RatingInput(item.scenario_id, score, modality) for item in assignment.items.all()],
        page_token=uuid.uuid4(),
    )
    services.assignment_complete(annotator=annotator, assignment_id=assignment.pk)
    return assignment, judgments


@dataclass
class World:
    context: Context
    scenarios: list[Scenario]
    canary: Scenario
    other_context: Context
    other_scenarios: list[Scenario]
    alice: Annotator
    bob: Annotator
    alice_assignment: Assignment
    bob_assignment: Assignment
    alice_judgments: list[Judgment]
    bob_judgments: list[Judgment]  # initial ones, then the reconfirmation
    bob_reconfirmed: Judgment
    researcher: object
    superuser: object
    export: DatasetExport


@pytest.fixture
def world(db) -> World:
    context = make_context("a child crossing a street")
    scenarios = make_scenarios(context, 3)
    canary = make_canary(context, 1, 2)  # MORALE_CANARY_RATE is 0 in tests: never on a page
    for scenario in [*scenarios, canary]:
        predict(scenario, 4.0)
    alice, bob = AnnotatorFactory(), AnnotatorFactory()
    alice_assignment, alice_judgments = rate_page(alice, 4)  # agrees with the model
    bob_assignment, bob_judgments = rate_page(bob, 3, "text")  # disagrees: delta 1 (the threshold)
    reconfirmed = services.judgment_reconfirm(
        annotator=bob, judgment_id=bob_judgments[0].pk, score=4, modality="image", page_token=uuid.uuid4()
    )
    other_context = make_context("a kitchen with a hot stove")  # after the pages: nobody has it
    other_scenarios = make_scenarios(other_context, 2)
    researcher = UserFactory()
    roles.researcher_make(researcher)
    superuser = UserFactory(is_staff=True, is_superuser=True)
    export = export_service.dataset_export_create(fmt="jsonl", created_by=researcher)
    return World(
        context=context,
        scenarios=scenarios,
        canary=canary,
        other_context=other_context,
        other_scenarios=other_scenarios,
        alice=alice,
        bob=bob,
        alice_assignment=alice_assignment,
        bob_assignment=bob_assignment,
        alice_judgments=alice_judgments,
        bob_judgments=[*bob_judgments, reconfirmed],
        bob_reconfirmed=reconfirmed,
        researcher=researcher,
        superuser=superuser,
        export=export,
    )


def token_client(user) -> APIClient:
    """A client that authenticates every request with the user's API token."""
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def as_alice(world) -> APIClient:
    return token_client(world.alice.user)


@pytest.fixture
def as_bob(world) -> APIClient:
    return token_client(world.bob.user)


@pytest.fixture
def as_researcher(world) -> APIClient:
    return token_client(world.researcher)


@pytest.fixture
def as_superuser(world) -> APIClient:
    return token_client(world.superuser)


@pytest.fixture
def export_sent(monkeypatch) -> list[int]:
    """Export ids handed to the broker (task annotation.export_dataset) once a request commits."""
    from annotation import tasks

    sent = []
    monkeypatch.setattr(tasks.export_dataset, "delay", lambda export_id: sent.append(export_id))
    return sent


@pytest.fixture
def anonymous(db) -> APIClient:
    return APIClient()


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]

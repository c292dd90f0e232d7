"""Filters: only allow-listed fields, no user-controlled ORM lookups (cf. Label Studio
CVE-2023-47117, where a filter on ``user__password__startswith`` leaked password hashes
one character at a time), ordering on allow-listed fields, bounded pages."""

import string
from datetime import timedelta

import pytest
from django.contrib.auth.hashers import make_password
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from annotation.models import Judgment
from morale.api.pagination import BoundedLimitOffsetPagination

from .conftest import ids

pytestmark = pytest.mark.django_db

LOOKUP_ATTACKS = [
    "annotator__user__password__startswith",
    "annotator__user__password",
    "annotator__user__username",
    "annotator__user__is_staff",
    "scenario__context__assignments__annotator__user__password__regex",
    "user__password__startswith",
    "created_by__password__startswith",
    "annotator__public_id__startswith",
    "id__in",
    "score__gte",
    "filter[annotator__user__password__startswith]",
]


@pytest.mark.parametrize("param", LOOKUP_ATTACKS)
@pytest.mark.parametrize("who", ["as_researcher", "as_alice"])
def test_orm_lookups_in_query_parameters_are_refused(world, request, who, param):
    client = request.getfixturevalue(who)
    response = client.get("/api/v1/judgments/", {param: "x"})
    assert response.status_code == 400
    assert "Unknown query parameter" in response.json()["detail"]
    assert "results" not in response.json()


@pytest.mark.parametrize(
    "path", ["/api/v1/exports/", "/api/v1/training-runs/", "/api/v1/predictions/", "/api/v1/model-versions/",
             "/api/v1/contexts/", "/api/v1/scenarios/", "/api/v1/assignments/"]
)
def test_every_resource_refuses_password_lookups(world, as_researcher, path):
    for param in ("created_by__password__startswith", "annotator__user__password__startswith", "author__user__password"):
        assert as_researcher.get(path, {param: "pbkdf2"}).status_code == 400, (path, param)


def test_a_password_hash_prefix_probe_gets_the_same_answer_for_every_guess(world, as_researcher):
    """The attack of CVE-2023-47117: guess the hash one character at a time and watch the
    result count. Every guess (right or wrong) gets the same refusal."""
    user = world.alice.user
    user.password = make_password("correct horse")
    user.save()
    right = user.password[:8]
    answers = set()
    for guess in [right, right[:-1] + "?", *[right[:-1] + c for c in string.ascii_letters[:10]]]:
        response = as_researcher.get("/api/v1/judgments/", {"annotator__user__password__startswith": guess})
        answers.add((response.status_code, response.content.replace(guess.encode(), b"")))
    assert len(answers) == 1 and next(iter(answers))[0] == 400


def test_lookups_are_refused_on_detail_urls_too(world, as_researcher):
    path = f"/api/v1/judgments/{world.alice_judgments[0].pk}/"
    assert as_researcher.get(path, {"annotator__user__password__startswith": "p"}).status_code == 400


def test_ordering_on_a_field_outside_the_allow_list_is_refused(world, as_researcher):
    for field in ("annotator__user__password", "-annotator__user__username", "client_token", "password"):
        response = as_researcher.get("/api/v1/judgments/", {"ordering": field})
        assert response.status_code == 400, field
        assert "ordering" in response.json()


def test_ordering_on_allow_listed_fields_works_with_the_id_as_tie_breaker(world, as_researcher):
    everyone = sorted(j.pk for j in [*world.alice_judgments, *world.bob_judgments])
    by_score = ids(as_researcher.get("/api/v1/judgments/", {"ordering": "-score"}))
    scores = dict(Judgment.objects.values_list("pk", "score"))
    assert by_score == sorted(everyone, key=lambda pk: (-scores[pk], pk))
    assert ids(as_researcher.get("/api/v1/judgments/", {"ordering": "-id"})) == everyone[::-1]


def test_judgment_filters(world, as_researcher):
    reconfirmed = world.bob_reconfirmed
    assert ids(as_researcher.get("/api/v1/judgments/", {"phase": "reconfirmed"})) == [reconfirmed.pk]
    assert ids(as_researcher.get("/api/v1/judgments/", {"annotator": str(world.bob.public_id)})) == [
        j.pk for j in world.bob_judgments
    ]
    assert ids(as_researcher.get("/api/v1/judgments/", {"scenario": reconfirmed.scenario_id})) == sorted(
        Judgment.objects.filter(scenario_id=reconfirmed.scenario_id).values_list("pk", flat=True)
    )
    assert ids(as_researcher.get("/api/v1/judgments/", {"modality": "image"})) == [reconfirmed.pk]
    assert len(ids(as_researcher.get("/api/v1/judgments/", {"context": world.context.pk}))) == 7
    assert ids(as_researcher.get("/api/v1/judgments/", {"context": world.other_context.pk})) == []
    assert ids(as_researcher.get("/api/v1/judgments/", {"assignment": world.alice_assignment.pk})) == [
        j.pk for j in world.alice_judgments
    ]


def test_judgments_by_creation_time(world, as_researcher):
    cutoff = world.bob_reconfirmed.created_at
    after = ids(as_researcher.get("/api/v1/judgments/", {"created_after": cutoff.isoformat()}))
    assert world.bob_reconfirmed.pk in after
    assert ids(as_researcher.get("/api/v1/judgments/", {"created_after": (timezone.now() + timedelta(days=1)).isoformat()})) == []
    assert len(ids(as_researcher.get("/api/v1/judgments/", {"created_before": (timezone.now() + timedelta(days=1)).isoformat()}))) == 7


def test_bad_filter_values_are_a_400_not_a_500(world, as_researcher):
    for params in ({"scenario": "abc"}, {"created_after": "yesterday"}, {"phase": "final"}, {"annotator": "not-a-uuid"},
                   {"scenario": "1 OR 1=1"}, {"scenario": "1.5"}, {"ordering": "score;drop"}):
        assert as_researcher.get("/api/v1/judgments/", params).status_code == 400, params


def test_an_annotator_cannot_widen_their_view_with_filters(world, as_alice):
    assert ids(as_alice.get("/api/v1/judgments/", {"annotator": str(world.bob.public_id)})) == []
    assert ids(as_alice.get("/api/v1/judgments/", {"assignment": world.bob_assignment.pk})) == []
    assert ids(as_alice.get("/api/v1/assignments/", {"annotator": str(world.bob.public_id)})) == []


@pytest.mark.parametrize(
    "path, params",
    [
        ("/api/v1/scenarios/", {"is_canary": "true"}),
        ("/api/v1/scenarios/", {"text_only_label": "1"}),
        ("/api/v1/scenarios/", {"ordering": "judgment_count"}),
        ("/api/v1/judgments/", {"canary_passed": "false"}),
        ("/api/v1/judgments/", {"model_version": "1"}),
        ("/api/v1/judgments/", {"ordering": "delta"}),
        ("/api/v1/contexts/", {"is_active": "true"}),
    ],
)
def test_filters_on_researcher_only_fields_are_refused_to_annotators(world, as_alice, as_researcher, path, params):
    assert as_alice.get(path, params).status_code == 400
    assert as_researcher.get(path, params).status_code == 200


def test_researchers_find_the_canaries(world, as_researcher):
    assert ids(as_researcher.get("/api/v1/scenarios/", {"is_canary": "true"})) == [world.canary.pk]
    assert ids(as_researcher.get("/api/v1/scenarios/", {"context": world.other_context.pk})) == [s.pk for s in world.other_scenarios]


def test_prediction_and_model_version_filters(world, as_researcher):
    current = ids(as_researcher.get("/api/v1/model-versions/", {"is_current": "true"}))
    assert len(current) == 1
    scenario = world.scenarios[1]
    found = as_researcher.get("/api/v1/predictions/", {"scenario": scenario.pk, "current": "true"}).json()["results"]
    assert [(p["scenario"], p["context"], p["model_version"], p["score"]) for p in found] == [
        (scenario.pk, world.context.pk, current[0], 4.0)
    ]


def test_pages_are_bounded_whatever_limit_is_asked_for(world, as_researcher):
    paginator = BoundedLimitOffsetPagination()
    asked = Request(APIRequestFactory().get("/api/v1/judgments/", {"limit": "1000000"}))
    assert paginator.get_limit(asked) == paginator.max_limit == 500
    assert paginator.get_limit(Request(APIRequestFactory().get("/"))) == 100
    page = as_researcher.get("/api/v1/judgments/", {"limit": 2, "offset": 1}).json()
    assert page["count"] == 7 and len(page["results"]) == 2 and page["next"] and page["previous"]

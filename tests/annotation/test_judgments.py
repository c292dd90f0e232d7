"""Submitting ratings and grounding checks: validation, idempotency, append-only rows."""

import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation import services
from annotation.models import Assignment, Judgment
from tests.factories import AnnotatorFactory, current_version, make_context, make_scenarios, predict

pytestmark = pytest.mark.django_db


@pytest.fixture
def page():
    context = make_context()
    make_scenarios(context, 3)
    annotator = AnnotatorFactory()
    return annotator, services.assignment_get_or_create(annotator=annotator)


def ratings_for(assignment, score=3, modality="both"):
    return [services.RatingInput(i.scenario_id, score, modality) for i in assignment.items.all()]


@pytest.mark.parametrize("bad_score", [0, 6, 2.5, "abc", None, "", True, -1])
def test_bad_score_is_refused_and_nothing_stored(page, bad_score):
    annotator, assignment = page
    ratings = ratings_for(assignment)
    ratings[0] = services.RatingInput(ratings[0].scenario_id, bad_score, "text")
    with pytest.raises(ValidationError) as exc:
        services.assignment_submit_ratings(
            annotator=annotator, assignment_id=assignment.pk, ratings=ratings, page_token=uuid.uuid4()
        )
    assert "1 to 5" in " ".join(exc.value.messages)
    assert Judgment.objects.count() == 0


@pytest.mark.parametrize("bad_modality", ["smell", "", None, "TEXT"])
def test_unknown_modality_is_refused_and_nothing_stored(page, bad_modality):
    annotator, assignment = page
    ratings = ratings_for(assignment)
    ratings[-1] = services.RatingInput(ratings[-1].scenario_id, 4, bad_modality)
    with pytest.raises(ValidationError, match="text, image or both"):
        services.assignment_submit_ratings(
            annotator=annotator, assignment_id=assignment.pk, ratings=ratings, page_token=uuid.uuid4()
        )
    assert Judgment.objects.count() == 0


def test_numeric_strings_from_forms_are_accepted(page):
    annotator, assignment = page
    judgments = services.assignment_submit_ratings(
        annotator=annotator, assignment_id=assignment.pk, ratings=ratings_for(assignment, score="4"), page_token=uuid.uuid4()
    )
    assert {j.score for j in judgments} == {4}


def test_every_scenario_on_the_page_must_be_rated(page):
    annotator, assignment = page
    with pytest.raises(ValidationError, match="every scenario"):
        services.assignment_submit_ratings(
            annotator=annotator, assignment_id=assignment.pk, ratings=ratings_for(assignment)[:-1], page_token=uuid.uuid4()
        )
    assert Judgment.objects.count() == 0


def test_same_submit_twice_stores_one_set_of_judgments(page):
    annotator, assignment = page
    token = uuid.uuid4()
    first = services.assignment_submit_ratings(
        annotator=annotator, assignment_id=assignment.pk, ratings=ratings_for(assignment), page_token=token
    )
    second = services.assignment_submit_ratings(
        annotator=annotator, assignment_id=assignment.pk, ratings=ratings_for(assignment), page_token=token
    )
    assert sorted(j.pk for j in first) == sorted(j.pk for j in second)
    assert Judgment.objects.count() == 3


def test_someone_elses_assignment_is_not_found_and_nothing_stored(page):
    _, assignment = page
    intruder = AnnotatorFactory()
    with pytest.raises(Assignment.DoesNotExist):
        services.assignment_submit_ratings(
            annotator=intruder, assignment_id=assignment.pk, ratings=ratings_for(assignment), page_token=uuid.uuid4()
        )
    assert Judgment.objects.count() == 0


def test_submit_after_expiry_raises_a_clear_error_and_stores_nothing(page):
    annotator, assignment = page
    later = timezone.now() + timedelta(minutes=31)
    with pytest.raises(services.AssignmentExpired):
        services.assignment_submit_ratings(
            annotator=annotator, assignment_id=assignment.pk, ratings=ratings_for(assignment), page_token=uuid.uuid4(), now=later
        )
    assert Judgment.objects.count() == 0


def submit_renewing(annotator, assignment, *, now):
    """Submit the page at `now`, asking to renew it if it expired (the rate page's resubmit)."""
    return services.assignment_submit_ratings(
        annotator=annotator,
        assignment_id=assignment.pk,
        ratings=ratings_for(assignment),
        page_token=uuid.uuid4(),
        renew_expired=True,
        now=now,
    )


def test_expired_page_can_be_saved_when_its_scenarios_are_still_open(page):
    annotator, assignment = page
    later = timezone.now() + timedelta(minutes=31)
    judgments = submit_renewing(annotator, assignment, now=later)
    assert len(judgments) == 3


def test_expired_page_cannot_be_saved_once_others_filled_it(page):
    annotator, assignment = page
    later = timezone.now() + timedelta(minutes=31)
    for _ in range(3):  # three others take every slot after the page lapsed
        other = AnnotatorFactory()
        a = services.assignment_get_or_create(annotator=other, now=later)
        services.assignment_submit_ratings(
            annotator=other, assignment_id=a.pk, ratings=ratings_for(a), page_token=uuid.uuid4(), now=later
        )
    with pytest.raises(services.AssignmentNoLongerAvailable):
        submit_renewing(annotator, assignment, now=later)
    assert not Judgment.objects.filter(annotator=annotator).exists()


def test_judgment_records_model_score_and_delta_at_that_moment(page):
    annotator, assignment = page
    items = list(assignment.items.all())
    predict(items[0].scenario, 1.5)
    judgments = services.assignment_submit_ratings(
        annotator=annotator, assignment_id=assignment.pk, ratings=ratings_for(assignment, score=4), page_token=uuid.uuid4()
    )
    by_scenario = {j.scenario_id: j for j in judgments}
    scored = by_scenario[items[0].scenario_id]
    assert scored.model_score == 1.5 and scored.delta == 2.5 and scored.model_version.is_current
    unscored = by_scenario[items[1].scenario_id]
    assert unscored.model_score is None and unscored.delta is None


def test_judgment_rows_are_append_only_in_the_database(page):
    annotator, assignment = page
    services.assignment_submit_ratings(
        annotator=annotator, assignment_id=assignment.pk, ratings=ratings_for(assignment), page_token=uuid.uuid4()
    )
    judgment = Judgment.objects.first()
    with pytest.raises(ValueError, match="append-only"):
        judgment.save()
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        Judgment.objects.filter(pk=judgment.pk).update(score=5)  # bypasses save(): the trigger refuses
    assert Judgment.objects.get(pk=judgment.pk).score == 3


def test_database_refuses_out_of_range_scores_even_without_the_service(page):
    annotator, assignment = page
    item = assignment.items.first()
    with pytest.raises(IntegrityError), transaction.atomic():
        Judgment.objects.create(
            annotator=annotator, scenario=item.scenario, assignment=assignment, score=7, modality="text",
            client_token=uuid.uuid4(),
        )


def test_reconfirmation_is_a_new_row_that_keeps_the_first(page):
    annotator, assignment = page
    first = services.assignment_submit_ratings(
        annotator=annotator, assignment_id=assignment.pk, ratings=ratings_for(assignment, score=5), page_token=uuid.uuid4()
    )[0]
    predict(first.scenario, 1.0)
    token = uuid.uuid4()
    again = services.judgment_reconfirm(
        annotator=annotator, judgment_id=first.pk, score=3, modality="image", page_token=token
    )
    twice = services.judgment_reconfirm(
        annotator=annotator, judgment_id=first.pk, score=2, modality="text", page_token=token
    )
    assert again.pk == twice.pk  # idempotent per check
    assert again.phase == "reconfirmed" and again.revises_id == first.pk and again.score == 3
    assert again.model_score == 1.0 and again.delta == 2.0  # the score the annotator was shown
    assert Judgment.objects.get(pk=first.pk).score == 5


def test_reconfirming_someone_elses_judgment_is_not_found(page):
    annotator, assignment = page
    first = services.assignment_submit_ratings(
        annotator=annotator, assignment_id=assignment.pk, ratings=ratings_for(assignment), page_token=uuid.uuid4()
    )[0]
    with pytest.raises(Judgment.DoesNotExist):
        services.judgment_reconfirm(
            annotator=AnnotatorFactory(), judgment_id=first.pk, score=1, modality="text", page_token=uuid.uuid4()
        )
    assert Judgment.objects.filter(phase="reconfirmed").count() == 0


# --- a grounding-check page: all answers or none -------------------------------------------
def _disagreeing_page(page, n_scored=3):
    """The page submitted with 5s while the model says 1.0 for its first ``n_scored`` scenarios."""
    annotator, assignment = page
    items = list(assignment.items.all())
    for item in items[:n_scored]:
        predict(item.scenario, 1.0)
    return services.assignment_submit_ratings(
        annotator=annotator, assignment_id=assignment.pk, ratings=ratings_for(assignment, score=5), page_token=uuid.uuid4()
    )


def answers_for(judgments, score=2, modality="image"):
    return [services.CheckAnswer(j.pk, score, modality, j.model_score, j.model_version_id) for j in judgments]


def test_a_check_page_is_stored_all_or_nothing(page):
    annotator, _ = page
    judgments = _disagreeing_page(page)
    real_full_clean = Judgment.full_clean
    calls = []

    def fail_on_the_second(self, *args, **kwargs):
        calls.append(self)
        if len(calls) == 2:
            raise ValidationError("the second answer fails")
        return real_full_clean(self, *args, **kwargs)

    with mock.patch.object(Judgment, "full_clean", fail_on_the_second), pytest.raises(ValidationError):
        services.judgments_reconfirm(annotator=annotator, answers=answers_for(judgments), page_token=uuid.uuid4())
    assert not Judgment.objects.filter(phase="reconfirmed").exists()  # the first answer is not left behind
    stored = services.judgments_reconfirm(annotator=annotator, answers=answers_for(judgments), page_token=uuid.uuid4())
    assert len(stored) == 3 and Judgment.objects.filter(phase="reconfirmed").count() == 3


def test_a_check_page_is_one_bulk_write(page, django_assert_max_num_queries):
    annotator, _ = page
    answers = answers_for(_disagreeing_page(page))
    with mock.patch.object(Judgment, "save", side_effect=AssertionError("one row at a time")):
        with django_assert_max_num_queries(5):  # savepoint, lock the initials, the answered ones, one INSERT
            services.judgments_reconfirm(annotator=annotator, answers=answers, page_token=uuid.uuid4())
    assert Judgment.objects.filter(phase="reconfirmed").count() == 3


def test_a_check_answered_before_keeps_its_first_answer(page):
    annotator, _ = page
    judgments = _disagreeing_page(page)
    first = services.judgments_reconfirm(annotator=annotator, answers=answers_for(judgments[:1], score=4), page_token=uuid.uuid4())
    page_answers = services.judgments_reconfirm(annotator=annotator, answers=answers_for(judgments, score=1), page_token=uuid.uuid4())
    assert page_answers[0].pk == first[0].pk and page_answers[0].score == 4
    assert [j.score for j in page_answers[1:]] == [1, 1]
    assert Judgment.objects.filter(phase="reconfirmed").count() == 3


def test_a_late_check_records_the_score_the_page_carried(page):
    annotator, _ = page
    judgments = _disagreeing_page(page, n_scored=0)  # no scores at submit
    late = judgments[0]
    version = current_version()
    stored = services.judgments_reconfirm(
        annotator=annotator,
        answers=[services.CheckAnswer(late.pk, 5, "text", model_score=1.5, model_version_id=version.pk)],
        page_token=uuid.uuid4(),
    )[0]
    assert (stored.model_score, stored.model_version, stored.delta) == (1.5, version, 3.5)


def test_a_check_page_with_someone_elses_judgment_stores_nothing(page):
    annotator, _ = page
    judgments = _disagreeing_page(page)
    with pytest.raises(Judgment.DoesNotExist):
        services.judgments_reconfirm(annotator=AnnotatorFactory(), answers=answers_for(judgments), page_token=uuid.uuid4())
    assert not Judgment.objects.filter(phase="reconfirmed").exists()

"""Quality control (annotation.research.quality): per-annotator figures against independent
computations (scipy's pearsonr, hand counts), flags, the automatic pause, the summary of the
stored flags; screening and reinstating (annotation.services.screening), and what a
screening does to exports and to assignment."""

import statistics
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from scipy.stats import pearsonr

from annotation import services, tasks
from annotation.dataset.export import service as export_service
from annotation.dataset import format as dataset_format
from annotation.models import Annotator, AnnotatorScreening, Assignment, Judgment
from annotation.research import quality
from morale.periodic import PERIODIC_TASKS
from tests.factories import AnnotatorFactory, UserFactory, make_canary, make_context

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def small_thresholds(settings):
    settings.MORALE_SCREEN_MIN_JUDGMENTS = 6
    settings.MORALE_CANARY_MIN_CHECKS = 3
    settings.MORALE_CANARY_WARN_RATE = 0.98
    settings.MORALE_CANARY_PAUSE_RATE = 0.8
    settings.MORALE_TOO_FAST_SECONDS = 2.0
    settings.MORALE_TOO_FAST_SHARE = 0.2
    settings.MORALE_SCREEN_MIN_CORRELATION = 0.3
    settings.MORALE_SCREEN_VARIANCE_Z = 3.5
    settings.MORALE_SCREEN_STRAIGHT_LINE_SHARE = 0.5


def contexts_with(n_contexts, per_context=4):
    out = []
    for _ in range(n_contexts):
        context = make_context()
        out.append(
            [services.scenario_create(context=context, text=f"action {k} in {context.setting}") for k in range(per_context)]
        )
    return out


def rate_page(annotator, scenarios, scores, *, seconds=10.0, modality="text"):
    """One completed page of `annotator` on the scenarios' context: scores[i] for scenarios[i]."""
    page = Assignment.objects.create(
        annotator=annotator, context=scenarios[0].context, status=Assignment.Status.COMPLETED, expires_at=timezone.now()
    )
    return [
        Judgment.objects.create(
            annotator=annotator,
            scenario=scenario,
            assignment=page,
            score=score,
            modality=modality,
            canary_passed=scenario.canary_accepts(score) if scenario.is_canary else None,
            seconds_spent=seconds,
            client_token=uuid.uuid4(),
        )
        for scenario, score in zip(scenarios, scores)
    ]


def answer_canaries(annotator, results):
    """One canary page per result: True = an answer inside the range (1-2), False = outside."""
    for passed in results:
        canary = make_canary(make_context(), 1, 2)
        rate_page(annotator, [canary], [1 if passed else 5])


def codes(annotator):
    annotator.refresh_from_db()
    return {f["code"] for f in annotator.quality["flags"]}


# --- per-annotator figures ---------------------------------------------------------------------
def test_correlation_with_leave_one_out_item_means_matches_scipy():
    pages = contexts_with(3)  # 12 scenarios
    truth = [1, 2, 4, 5, 3, 1, 5, 2, 4, 3, 2, 5]
    noise = [[0, 1, 0, -1, 0, 0, 0, 1, 0, 0, -1, 0], [1, 0, -1, 0, 0, 1, 0, 0, 0, -1, 0, 0], [0, 0, 0, 0, 1, 0, -1, 0, 1, 0, 0, 0]]
    annotators = [AnnotatorFactory() for _ in range(4)]
    given = {}
    for i, annotator in enumerate(annotators):
        if i < 3:
            scores = [min(5, max(1, t + n)) for t, n in zip(truth, noise[i])]
        else:
            scores = [6 - t for t in truth]  # reversed: negatively correlated
        given[annotator.pk] = scores
        for p, scenarios in enumerate(pages):
            rate_page(annotator, scenarios, scores[4 * p : 4 * p + 4])
    quality.quality_refresh()
    for annotator in annotators:
        others = [given[a.pk] for a in annotators if a.pk != annotator.pk]
        loo = [sum(o[k] for o in others) / 3 for k in range(12)]
        expected = pearsonr(given[annotator.pk], loo).statistic
        annotator.refresh_from_db()
        stats = annotator.quality["stats"]
        assert stats["correlation"] == pytest.approx(expected, abs=1e-12)
        assert stats["correlation_items"] == 12
    assert "low_correlation" in codes(annotators[3])
    assert all("low_correlation" not in codes(a) for a in annotators[:3])


def test_screened_out_annotators_are_not_other_raters_in_item_means():
    pages = contexts_with(2)
    annotators = [AnnotatorFactory() for _ in range(4)]
    scores = [[1, 2, 3, 4, 5, 1, 2, 3], [2, 2, 3, 5, 4, 1, 3, 3], [1, 3, 4, 4, 5, 2, 2, 4], [5, 5, 1, 1, 1, 5, 5, 1]]
    for annotator, row in zip(annotators, scores):
        for p, scenarios in enumerate(pages):
            rate_page(annotator, scenarios, row[4 * p : 4 * p + 4])
    services.annotator_screen_out(annotators[3], by=None, reasons=["test"])
    stats = quality.annotator_stats()
    # Each of the first three now has only two other raters: the other two of the first three.
    for i in range(3):
        others = [scores[j] for j in range(3) if j != i]
        loo = [(others[0][k] + others[1][k]) / 2 for k in range(8)]
        assert stats[annotators[i].pk]["correlation"] == pytest.approx(pearsonr(scores[i], loo).statistic, abs=1e-12)
    # The screened-out one is compared with all three.
    loo = [sum(scores[j][k] for j in range(3)) / 3 for k in range(8)]
    assert stats[annotators[3].pk]["correlation"] == pytest.approx(pearsonr(scores[3], loo).statistic, abs=1e-12)


def test_canary_pass_rate_too_fast_share_and_their_flags():
    pages = contexts_with(2)
    careful, hasty = AnnotatorFactory(), AnnotatorFactory()
    for p, scenarios in enumerate(pages):
        rate_page(careful, scenarios, [1, 3, 4, 5], seconds=8.0)
        rate_page(hasty, scenarios, [2, 3, 4, 5], seconds=1.5 if p == 0 else 9.0)  # 4 of 8 too fast
    answer_canaries(careful, [True] * 4)
    answer_canaries(hasty, [True, True, True, True, False])  # 80%: flagged (below 98%), not paused (not below 80%)
    stats = quality.annotator_stats()
    assert stats[careful.pk]["canary_pass_rate"] == 1.0 and stats[careful.pk]["canary_checks"] == 4
    assert stats[hasty.pk]["canary_pass_rate"] == 0.8
    assert stats[hasty.pk]["too_fast"] == 4 and stats[hasty.pk]["timed"] == 8 and stats[hasty.pk]["too_fast_share"] == 0.5
    assert stats[careful.pk]["too_fast_share"] == 0.0
    assert quality.quality_refresh()["paused"] == []
    assert codes(careful) == set()
    assert {"canary_pass_rate", "too_fast"} <= codes(hasty)


def test_constant_and_straight_line_rating_are_flagged():
    pages = contexts_with(4)
    constant, straight, honest = AnnotatorFactory(), AnnotatorFactory(), AnnotatorFactory()
    for p, scenarios in enumerate(pages):
        rate_page(constant, scenarios, [4, 4, 4, 4])
        rate_page(straight, scenarios, [p + 1] * 4 if p < 3 else [1, 2, 3, 4])  # 3 of 4 pages all the same
        rate_page(honest, scenarios, [1, 3, 4, 5] if p % 2 else [5, 3, 3, 2])
    stats = quality.annotator_stats()
    assert stats[constant.pk]["distinct_scores"] == 1
    assert (stats[straight.pk]["straight_pages"], stats[straight.pk]["pages"]) == (3, 4)
    assert stats[honest.pk]["straight_pages"] == 0
    quality.quality_refresh()
    assert "constant" in codes(constant) and "straight_line" not in codes(constant)
    assert "straight_line" in codes(straight) and "constant" not in codes(straight)
    assert not {"constant", "straight_line"} & codes(honest)


def test_variance_outlier_by_robust_z_against_hand_computation(settings):
    settings.MORALE_SCREEN_VARIANCE_Z = 3.0
    pages = contexts_with(2)
    rows = [
        [3, 4, 3, 2, 3, 4, 3, 2],
        [2, 3, 4, 3, 3, 2, 4, 4],
        [3, 3, 4, 2, 3, 3, 4, 3],
        [4, 3, 3, 1, 4, 3, 2, 4],
        [1, 5, 1, 5, 1, 5, 1, 5],  # wild
    ]
    annotators = [AnnotatorFactory() for _ in rows]
    for annotator, row in zip(annotators, rows):
        for p, scenarios in enumerate(pages):
            rate_page(annotator, scenarios, row[4 * p : 4 * p + 4])
    variances = [statistics.variance(r) for r in rows]
    median = statistics.median(variances)
    mad = statistics.median(abs(v - median) for v in variances)
    expected_z = [(v - median) / (1.4826 * mad) for v in variances]
    stats = quality.annotator_stats()
    for annotator, v, z in zip(annotators, variances, expected_z):
        assert stats[annotator.pk]["variance"] == pytest.approx(v)
        assert stats[annotator.pk]["variance_z"] == pytest.approx(z)
    quality.quality_refresh()
    assert "variance_outlier" in codes(annotators[4])
    assert all("variance_outlier" not in codes(a) for a in annotators[:4])


def test_screening_waits_for_enough_judgments(settings):
    settings.MORALE_SCREEN_MIN_JUDGMENTS = 20
    (scenarios,) = contexts_with(1)
    annotator = AnnotatorFactory()
    rate_page(annotator, scenarios, [3, 3, 3, 3], seconds=0.5)
    quality.quality_refresh()
    annotator.refresh_from_db()
    assert annotator.quality["flags"] == [] and annotator.quality["stats"]["distinct_scores"] == 1
    assert annotator.quality_checked_at is not None


def test_stats_take_the_same_number_of_queries_for_any_number_of_annotators():
    def queries_for(n_annotators):
        pages = contexts_with(1)
        for _ in range(n_annotators):
            rate_page(AnnotatorFactory(), pages[0], [1, 2, 3, 4])
        with CaptureQueriesContext(connection) as ctx:
            quality.annotator_stats()
        return len(ctx.captured_queries)

    assert queries_for(2) == queries_for(12) == 4


# --- automatic pause, screening, reinstating ------------------------------------------------------
def test_quality_refresh_pauses_annotators_failing_canaries_with_a_screening_row():
    failing, passing, few = AnnotatorFactory(), AnnotatorFactory(), AnnotatorFactory()
    answer_canaries(failing, [True, False, False, True])  # 50% after 4 >= 3 checks
    answer_canaries(passing, [True, True, True])
    answer_canaries(few, [False, False])  # only 2 checks: not yet
    result = quality.quality_refresh()
    assert result["paused"] == [failing.pk]
    failing.refresh_from_db()
    assert failing.status == Annotator.Status.PAUSED and "canary pass rate 50%" in failing.status_reason
    screening = AnnotatorScreening.objects.get(annotator=failing)
    assert screening.action == "pause" and screening.decided_by is None
    assert screening.reasons[0]["code"] == "canary_pause"
    for other in (passing, few):
        other.refresh_from_db()
        assert other.status == Annotator.Status.ACTIVE
    assert not AnnotatorScreening.objects.exclude(annotator=failing).exists()
    assert quality.quality_refresh()["paused"] == []  # already paused: nothing new
    assert AnnotatorScreening.objects.count() == 1


def test_reinstated_annotator_is_not_paused_again_for_old_canaries_but_is_for_new_ones():
    annotator = AnnotatorFactory()
    researcher = UserFactory(is_staff=True)
    answer_canaries(annotator, [False, False, False])
    quality.quality_refresh()
    annotator.refresh_from_db()
    assert annotator.status == Annotator.Status.PAUSED
    services.annotator_reinstate(annotator, by=researcher, note="talked to them; instructions were unclear")
    assert quality.quality_refresh()["paused"] == []
    annotator.refresh_from_db()
    assert annotator.status == Annotator.Status.ACTIVE
    assert "canary_pass_rate" in codes(annotator)  # the flag stays: the overall rate is still 0%
    answer_canaries(annotator, [True, False, False])  # 33% since reinstated
    assert quality.quality_refresh()["paused"] == [annotator.pk]
    actions = list(AnnotatorScreening.objects.filter(annotator=annotator).order_by("id").values_list("action", flat=True))
    assert actions == ["pause", "reinstate", "pause"]


def test_screen_out_and_reinstate_round_trip_with_history():
    researcher = UserFactory(is_staff=True)
    annotator = AnnotatorFactory()
    Annotator.objects.filter(pk=annotator.pk).update(quality={"flags": [{"code": "constant", "message": "All 4s."}], "stats": {}})
    annotator.refresh_from_db()
    row = services.annotator_screen_out(annotator, by=researcher, reasons=None)  # confirms the current flags
    assert row is not None and row.action == "screen_out" and row.decided_by == researcher
    assert row.reasons == [{"code": "constant", "message": "All 4s."}]
    annotator.refresh_from_db()
    assert annotator.status == Annotator.Status.SCREENED_OUT and annotator.status_reason == "All 4s."

    back = services.annotator_reinstate(annotator, by=researcher, note="appeal accepted")
    annotator.refresh_from_db()
    assert back.action == "reinstate" and back.reasons == [{"code": "note", "message": "appeal accepted"}]
    assert annotator.status == Annotator.Status.ACTIVE and annotator.status_reason == "appeal accepted"
    assert list(annotator.screenings.order_by("id").values_list("action", flat=True)) == ["screen_out", "reinstate"]


def test_status_changes_are_idempotent():
    researcher = UserFactory(is_staff=True)
    annotator = AnnotatorFactory()
    assert services.annotator_reinstate(annotator, by=researcher) is None  # active already
    assert services.annotator_screen_out(annotator, by=researcher, reasons="copy-pasted answers") is not None
    assert services.annotator_screen_out(annotator, by=researcher, reasons="again") is None
    assert services.annotator_pause(annotator, by=researcher, reasons="pause") is None  # screened is stronger
    annotator.refresh_from_db()
    assert annotator.status == Annotator.Status.SCREENED_OUT and annotator.status_reason == "copy-pasted answers"
    assert AnnotatorScreening.objects.filter(annotator=annotator).count() == 1
    paused = AnnotatorFactory()
    assert services.annotator_pause(paused, by=None, reasons=["away"]) is not None
    assert services.annotator_pause(paused, by=None, reasons=["away"]) is None
    assert services.annotator_screen_out(paused, by=researcher, reasons=["confirmed"]) is not None  # paused -> screened
    assert list(paused.screenings.order_by("id").values_list("action", flat=True)) == ["pause", "screen_out"]


def test_paused_or_screened_annotators_get_no_new_pages_and_their_open_page_is_freed():
    (scenarios,) = contexts_with(1)
    annotator = AnnotatorFactory()
    page = services.assignment_get_or_create(annotator=annotator)
    assert page is not None and page.status == Assignment.Status.ACTIVE
    services.annotator_pause(annotator, by=None, reasons="test")
    page.refresh_from_db()
    assert page.status == Assignment.Status.EXPIRED
    with pytest.raises(services.AnnotatorNotActive):
        services.assignment_get_or_create(annotator=annotator)
    services.annotator_screen_out(annotator, by=None, reasons="test")
    with pytest.raises(services.AnnotatorNotActive):
        services.assignment_get_or_create(annotator=annotator)
    services.annotator_reinstate(annotator, by=None)
    assert services.assignment_get_or_create(annotator=annotator) is not None
    assert len(scenarios) == 4


@pytest.mark.parametrize("action", ["pause", "screen_out"])
def test_inactive_annotators_see_the_no_work_page(client, action):
    contexts_with(1)
    annotator = AnnotatorFactory()
    client.force_login(annotator.user)
    assert client.get(reverse("annotation:next")).status_code == 302  # to their new page
    getattr(services, f"annotator_{action}")(annotator, by=None, reasons="test")
    response = client.get(reverse("annotation:next"))
    assert response.status_code == 403 and b"No work available" in response.content


def test_screened_annotators_judgments_stay_stored_and_are_left_out_of_exports():
    (scenarios,) = contexts_with(1, per_context=2)
    kept, screened = AnnotatorFactory(), AnnotatorFactory()
    rate_page(kept, scenarios, [4, 5])
    rate_page(screened, scenarios, [3, 4])  # within the sd limit of the export
    services.annotator_screen_out(screened, by=UserFactory(is_staff=True), reasons=["constant"])
    assert Judgment.objects.filter(annotator=screened).count() == 2  # still stored
    record = export_service.dataset_export_create(fmt="jsonl")
    lines = list(dataset_format.iter_export(record.file.path))
    ids = {j["annotator_id"] for line in lines for s in line["scenarios"] for j in s["judgments"]}
    assert ids == {str(kept.public_id)}
    assert record.counts["dropped"]["screened_judgments"] == 2
    services.annotator_reinstate(screened, by=None, note="")
    record = export_service.dataset_export_create(fmt="jsonl")
    assert record.counts["dropped"]["screened_judgments"] == 0 and record.counts["judgments"] == 4


# --- the stored flags, summarised for the dashboard --------------------------------------------
def test_annotator_quality_summary_counts_stored_flags():
    a, b, c = AnnotatorFactory(), AnnotatorFactory(), AnnotatorFactory()
    Annotator.objects.filter(pk=a.pk).update(
        quality={"flags": [{"code": "too_fast", "message": "x"}, {"code": "constant", "message": "y"}],
                 "stats": {"canary_checks": 10, "canary_pass_rate": 0.7}},
        quality_checked_at=timezone.now(),
    )
    Annotator.objects.filter(pk=b.pk).update(
        quality={"flags": [{"code": "too_fast", "message": "x"}], "stats": {"canary_checks": 2, "canary_pass_rate": 0.5}},
        quality_checked_at=timezone.now(),
    )
    Annotator.objects.filter(pk=c.pk).update(quality={"flags": [], "stats": {"canary_checks": 6, "canary_pass_rate": 1.0}})
    summary = quality.annotator_quality_summary()
    assert summary["flag_counts"] == {"constant": 1, "too_fast": 2}
    assert summary["flagged"] == 2 and summary["checked"] == 2
    assert summary["canary_rates"] == [0.7, 1.0]  # b answered too few canaries
    hist = {(h["low"], h["high"]): h["n"] for h in summary["canary_histogram"]}
    assert hist[(0.5, 0.8)] == 1 and hist[(0.98, 1.0)] == 1 and sum(hist.values()) == 2


# --- the periodic task -------------------------------------------------------------------------------
def test_quality_refresh_task_runs_the_service_and_is_scheduled(settings):
    annotator = AnnotatorFactory()
    answer_canaries(annotator, [False] * 3)
    result = tasks.quality_refresh.run()
    assert result["paused"] == [annotator.pk]
    assert tasks.quality_refresh.name == "annotation.quality_refresh"
    entries = {task: seconds for _, task, seconds in PERIODIC_TASKS}
    settings.MORALE_QUALITY_INTERVAL_SECONDS = 123
    assert entries["annotation.quality_refresh"]() == 123

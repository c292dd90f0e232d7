"""The progress line: this session's pages against its target, and time left at the annotator's own pace."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import selectors
from annotation.models import Assignment
from tests.factories import AnnotatorFactory, make_context, make_scenarios

pytestmark = pytest.mark.django_db


def make_pages(annotator, specs):
    """Completed pages: (minutes from opening to finishing, how long before now it ended) each."""
    for minutes, ago in specs:
        end = timezone.now() - ago
        page = Assignment.objects.create(
            annotator=annotator, context=make_context(), status=Assignment.Status.COMPLETED,
            expires_at=end, submitted_at=end, completed_at=end,
        )
        # created_at is auto_now_add: set when the page was opened afterwards.
        Assignment.objects.filter(pk=page.pk).update(created_at=end - timedelta(minutes=minutes))


def test_share_of_the_target_and_minutes_left_at_the_annotators_own_pace(settings):
    settings.MORALE_SESSION_TARGET_PAGES = 10
    annotator = AnnotatorFactory()
    for _ in range(12):
        make_scenarios(make_context(), 3)  # plenty left to rate
    make_pages(annotator, [(2, timedelta(0)), (3, timedelta(0)), (10, timedelta(0))])  # median 3 min
    progress = selectors.annotator_progress(annotator=annotator)
    assert (progress.session_pages, progress.share, progress.pages_to_go) == (3, 30, 7)
    assert progress.seconds_per_page == pytest.approx(180, abs=1)
    assert progress.minutes_left == 21 and not progress.target_reached and not progress.few_images_left


def test_pages_of_an_earlier_session_count_for_the_pace_not_for_the_target(settings):
    settings.MORALE_SESSION_TARGET_PAGES = 4
    annotator = AnnotatorFactory()
    make_scenarios(make_context(), 3)
    make_pages(annotator, [(1, timedelta(days=2)), (1, timedelta(days=2)), (5, timedelta(minutes=5))])
    progress = selectors.annotator_progress(annotator=annotator)
    assert (progress.pages_done, progress.session_pages, progress.share) == (3, 1, 25)
    assert progress.seconds_per_page == pytest.approx(60, abs=1)
    # Three pages to the target, but only one image left: the estimate is for that one.
    assert progress.pages_to_go == 1 and progress.few_images_left and progress.minutes_left == 1


def test_a_page_left_open_over_a_break_counts_at_most_its_time_to_live(settings):
    settings.MORALE_ASSIGNMENT_TTL_MINUTES = 30
    annotator = AnnotatorFactory()
    make_pages(annotator, [(600, timedelta(0))])
    assert selectors.annotator_progress(annotator=annotator).seconds_per_page == pytest.approx(30 * 60, abs=1)


def test_before_the_first_page_there_is_no_estimate_and_past_the_target_no_share_above_100(settings):
    settings.MORALE_SESSION_TARGET_PAGES = 2
    annotator = AnnotatorFactory()
    first = selectors.annotator_progress(annotator=annotator)
    assert first.seconds_per_page is None and first.minutes_left is None and first.share == 0
    make_pages(annotator, [(1, timedelta(0))] * 3)
    done = selectors.annotator_progress(annotator=annotator)
    assert done.share == 100 and done.target_reached and done.pages_to_go == 0 and done.minutes_left is None


def test_without_a_target_the_line_counts_pages_only(settings):
    settings.MORALE_SESSION_TARGET_PAGES = 0
    annotator = AnnotatorFactory()
    make_pages(annotator, [(2, timedelta(0))])
    progress = selectors.annotator_progress(annotator=annotator)
    assert progress.share is None and not progress.target_reached and progress.few_images_left

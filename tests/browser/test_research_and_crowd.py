"""Crowd participants and researchers in a real browser (Debian's chromium through Playwright).

1. A Prolific participant follows the study link: no sign-up, consent, one page rated,
   and the finish page shows the completion code with the link back to Prolific.
2. A researcher opens the dashboard (every figure drawn, with its data table) and queues
   an export of selected contexts from the admin.
"""

import re

import pytest

from annotation.models import Annotator, DatasetExport, Judgment
from morale.roles import researcher_make
from tests.annotation.dataset.helpers import rate_page
from tests.factories import AnnotatorFactory, UserFactory, make_context

from .conftest import PHONE
from .test_annotator_flow import assert_well_formed, make_scenarios_with_model, rate_by_click, scenario_fieldsets

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PROLIFIC_PID = "60a1b2c3d4e5f60718293a4b"


def test_prolific_participant_enters_rates_and_gets_the_completion_code(new_page, settings):
    settings.MORALE_CROWD_PLATFORMS = ["prolific"]
    settings.MORALE_PROLIFIC_STUDY_ID = "study-42"
    settings.MORALE_COMPLETION_CODE = "C7Q2MORALE"
    context = make_context("a crowded train platform")
    plan = {"helping a man with his suitcase": 3.9, "pushing to the front of the queue": 2.1}
    scenarios = make_scenarios_with_model(context, plan)
    page = new_page(viewport=PHONE)

    # A link of another study is refused with a reason, and creates nobody.
    page.goto(f"/enter/?PROLIFIC_PID={PROLIFIC_PID}&STUDY_ID=other&SESSION_ID=s1")
    assert page.get_by_role("alert").filter(has_text="another study").is_visible()
    assert not Annotator.objects.exists()

    page.goto(f"/enter/?PROLIFIC_PID={PROLIFIC_PID}&STUDY_ID=study-42&SESSION_ID=s1")
    page.wait_for_url(re.compile(r"/consent/$"))
    assert_well_formed(page)
    page.get_by_role("checkbox", name=re.compile("I agree to take part")).check()
    page.get_by_role("button", name=re.compile("start", re.I)).click()

    page.wait_for_url(re.compile(r"/annotate/\d+/$"))
    for fieldset, scenario in scenario_fieldsets(page, scenarios):
        rate_by_click(fieldset, 4 if "helping" in scenario.text else 2, "both")
    page.get_by_role("button", name=re.compile("submit", re.I)).click()
    # The model agrees on both: the add-scenario prompt, which may be skipped.
    page.wait_for_url(re.compile(r"/annotate/\d+/add/$"))
    page.get_by_role("button", name="Skip").click()

    page.goto("/finish/")
    code = page.locator("#completion-code")
    assert code.inner_text() == "C7Q2MORALE"
    back = page.get_by_role("link", name="Return to Prolific and confirm")
    assert back.get_attribute("href") == "https://app.prolific.com/submissions/complete?cc=C7Q2MORALE"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    annotator = Annotator.objects.get()
    assert (annotator.platform, annotator.platform_participant_id) == ("prolific", PROLIFIC_PID)
    assert Judgment.objects.filter(annotator=annotator).count() == 2


def test_researcher_reads_the_dashboard_and_queues_an_export(new_page):
    context = make_context("a kitchen with a hot stove")
    scenarios = make_scenarios_with_model(context, {"turning the stove off": 4.8, "leaving a toddler next to it": 1.3})
    for scores in ((5, 1), (4, 2)):
        rate_page(AnnotatorFactory(), context, {s.pk: (score, "both") for s, score in zip(scenarios.values(), scores)})
    user = UserFactory(username="rita")
    researcher_make(user)
    page = new_page(user=user)

    page.goto("/research/")
    assert_well_formed(page)
    figures = page.locator("figure.chart")
    assert figures.count() >= 8
    for i in range(figures.count()):
        figure = figures.nth(i)
        # A drawing, or a note saying why there is none yet; always a title and the numbers.
        assert figure.locator("svg").count() + figure.locator(".chart-empty").count() == 1
        assert figure.locator("figcaption").inner_text().strip()
        assert figure.locator("details table").count() == 1
    ratings = page.locator("#fig-ratings")
    assert ratings.locator("svg rect").count() >= 2  # scores 1, 2, 4 and 5 were given

    # The header leads to the admin; export the context in the background from there.
    page.get_by_role("navigation", name="Account").get_by_role("link", name="Admin").click()
    page.goto("/admin/annotation/context/")
    page.locator(f"input[name='_selected_action'][value='{context.pk}']").check()
    page.locator("select[name='action']").select_option("export_selected")
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("Go|Run", re.I)).click()
    page.get_by_text(re.compile(r"Export #\d+ is queued")).wait_for()
    export = DatasetExport.objects.get()
    assert export.options["context_ids"] == [context.pk]

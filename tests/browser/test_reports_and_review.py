"""Reports, written-scenario review and the researchers' admin lists in a real browser
(Debian's chromium through Playwright; issue 15, items 5-7).

1. An annotator reports one item and rates the rest; a second report takes the scenario out
   of the pool; a researcher finds it in the admin's "Reported scenarios" (filtered by
   reason) and keeps it, and it is given out again.
2. With MORALE_WRITTEN_SCENARIOS=review an annotator's new scenario waits; a researcher
   approves one and rejects another (with a reason) in the admin queue; only the approved
   one reaches the next annotator.
3. At 1280 px the Disagreements, Judgments and Predictions lists (and the new queues) show
   every column without a scroll box, with scores rounded and the check answer in words.
4. A researcher who signs in lands on /research/.
"""

import re

import pytest

from annotation import selectors, services
from annotation.models import Annotator, ItemReport, Judgment, PageComment, Scenario
from morale.roles import researcher_make
from tests.annotation.dataset.helpers import rate_page
from tests.factories import AnnotatorFactory, UserFactory, make_context

from .conftest import DESKTOP
from .test_annotator_flow import RATE_URL, assert_well_formed, make_scenarios_with_model, rate_by_click, scenario_fieldsets

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ADD_URL = re.compile(r"/annotate/\d+/add/$")

# How the list's scroll box and the headers sit on the screen.
LIST_LAYOUT_JS = """() => {
  const box = document.querySelector('#changelist-form .results');
  const heads = Array.from(document.querySelectorAll('#result_list thead th')).map((th) => {
    const r = th.getBoundingClientRect();
    return {text: th.innerText.trim().toLowerCase(), left: r.left, right: r.right};
  });
  return {clientWidth: box.clientWidth, scrollWidth: box.scrollWidth, viewport: window.innerWidth,
          pageWidth: document.scrollingElement.scrollWidth, heads: heads};
}"""


def researcher_page(new_page, username="rita"):
    user = UserFactory(username=username)
    researcher_make(user)
    return new_page(user=user)


def run_action(page, action: str, ids) -> None:
    for pk in ids:
        page.locator(f"input[name='_selected_action'][value='{pk}']").check()
    page.locator("select[name='action']").select_option(action)
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("^Go$")).click()


# --- 1. report and keep ---------------------------------------------------------------------------
def test_a_report_round_trip_from_the_rating_page_to_the_admin_and_back(new_page, shot):
    context = make_context("a grey rectangle said to be a playground")
    plan = {
        "pushing a child on the swing": 4.5,
        "climbing the fence to get in after closing time": 2.2,
        "sharing a snack with a child who has none": 4.4,
    }
    scenarios = make_scenarios_with_model(context, plan)
    target = scenarios["pushing a child on the swing"]
    first = AnnotatorFactory()
    page = new_page(user=first.user)
    page.goto("/annotate/")
    page.wait_for_url(RATE_URL)
    assert_well_formed(page)

    # Rate one scenario, then report another: the typed answer survives the report.
    boxes = dict((s.pk, box) for box, s in scenario_fieldsets(page, scenarios))
    climbing = scenarios["climbing the fence to get in after closing time"]
    rate_by_click(boxes[climbing.pk], 2, "text")
    page.get_by_label(re.compile("Anything to tell the researchers")).fill("the image is only grey")
    box = boxes[target.pk]
    box.get_by_text("Report this item").click()
    box.get_by_role("radio", name="Broken image").check()
    shot(page, "20-report")
    with page.expect_navigation():
        box.get_by_role("button", name="Report and skip this item").click()
    assert_well_formed(page)
    assert page.get_by_role("status").filter(has_text="That scenario is skipped").is_visible()
    assert page.locator(f"[data-reported='{target.pk}']").filter(has_text="broken image").is_visible()
    remaining = scenario_fieldsets(page, scenarios)
    assert {s.pk for _, s in remaining} == {climbing.pk, scenarios["sharing a snack with a child who has none"].pk}
    kept = dict((s.pk, b) for b, s in remaining)[climbing.pk]
    assert kept.get_by_role("radio", name="2: Unacceptable", exact=True).is_checked()
    assert page.get_by_label(re.compile("Anything to tell the researchers")).input_value() == "the image is only grey"
    shot(page, "21-reported")

    # Submit: the browser asks for nothing about the reported item, the server accepts the page.
    rate_by_click(dict((s.pk, b) for b, s in remaining)[scenarios["sharing a snack with a child who has none"].pk], 5, "both")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url(ADD_URL)  # the model agreed on both rated scenarios
    stored = Judgment.objects.filter(annotator=first)
    assert sorted(stored.values_list("scenario_id", flat=True)) == sorted([climbing.pk, scenarios["sharing a snack with a child who has none"].pk])
    assert PageComment.objects.get().text == "the image is only grey"

    # A second annotator reports it too: it leaves the pool.
    second = AnnotatorFactory()
    services.item_report(
        annotator=second,
        assignment_id=services.assignment_get_or_create(annotator=second).pk,
        scenario_id=target.pk,
        reason="nonsense",
    )
    target.refresh_from_db()
    assert target.review_status == Scenario.Review.REPORTED
    assert target not in selectors.open_scenarios_for(AnnotatorFactory())

    # The researcher sees it in the queue, filters by reason, and keeps it.
    admin = researcher_page(new_page)
    admin.goto("/admin/")
    with admin.expect_navigation():
        admin.get_by_role("link", name="Reported scenarios").click()
    assert admin.errors == []  # (Django's own search box has no accessible name: not checked here)
    row = admin.locator("#result_list tbody tr").filter(has_text=target.text)
    assert row.locator("td.field-reports").inner_text() == "2 (2)"
    assert "broken image x1" in row.locator("td.field-reasons").inner_text()
    with admin.expect_navigation():
        admin.get_by_role("link", name="broken image").click()
    assert admin.locator("#result_list tbody tr").count() == 1
    shot(admin, "22-reported-queue")
    run_action(admin, "keep", [target.pk])
    assert admin.get_by_text(re.compile(r"1 scenario\(s\) kept")).is_visible()
    target.refresh_from_db()
    assert target.review_status == Scenario.Review.ACCEPTED
    assert set(ItemReport.objects.values_list("decision", flat=True)) == {"kept"}
    assert target in selectors.open_scenarios_for(AnnotatorFactory())


# --- 2. approve and reject written scenarios --------------------------------------------------------
def test_written_scenarios_wait_for_approval_in_the_admin(new_page, settings, shot):
    settings.MORALE_WRITTEN_SCENARIOS = "review"
    context = make_context("a dog tied up outside a shop")
    seeds = make_scenarios_with_model(context, {"bringing the dog a bowl of water": 4.6})
    author = AnnotatorFactory()
    page = new_page(user=author.user)
    page.goto("/annotate/")
    page.wait_for_url(RATE_URL)
    for box, _ in scenario_fieldsets(page, seeds):
        rate_by_click(box, 5, "both")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url(ADD_URL)
    page.get_by_label(re.compile("Write another action")).fill("asking the owner whether the dog is thirsty")
    page.get_by_role("button", name="Add scenario").click()
    page.wait_for_url(re.compile(r"/finish/$"))
    assert page.get_by_role("status").filter(has_text="a researcher will look at your scenario").is_visible()
    good = Scenario.objects.get(text="asking the owner whether the dog is thirsty")
    bad = services.scenario_create(
        context=context, text="something about a car", origin="annotator", author=author, review_status="pending"
    )
    reader = AnnotatorFactory()
    assert not {good, bad} & set(selectors.open_scenarios_for(reader))

    admin = researcher_page(new_page)
    admin.goto("/admin/")
    with admin.expect_navigation():
        admin.get_by_role("link", name="Written scenarios to review").click()
    assert admin.errors == []
    assert admin.locator("#result_list tbody tr").count() == 2
    assert admin.locator("#result_list img.context-thumb").count() == 2
    shot(admin, "23-review-queue")
    run_action(admin, "approve", [good.pk])
    assert admin.get_by_text(re.compile(r"1 scenario\(s\) approved")).is_visible()
    run_action(admin, "reject", [bad.pk])
    assert admin.get_by_role("heading", name="Reject written scenarios").is_visible()
    assert admin.errors == []
    admin.get_by_label("Reason").fill("unrelated to the image")
    with admin.expect_navigation():
        admin.get_by_role("button", name="Reject 1 scenario").click()
    assert admin.get_by_text(re.compile(r"1 scenario\(s\) rejected")).is_visible()

    good.refresh_from_db()
    bad.refresh_from_db()
    assert good.review_status == "accepted"
    assert (bad.review_status, bad.review_note) == ("rejected", "unrelated to the image")
    open_now = set(selectors.open_scenarios_for(reader))
    assert good in open_now and bad not in open_now


# --- 3. the lists at 1280 px ---------------------------------------------------------------------
LISTS = {
    "/admin/annotation/disagreement/": ["score", "model score", "delta", "at the check"],
    "/admin/annotation/judgment/": ["score", "model score", "delta", "canary passed", "created"],
    "/admin/modelloop/prediction/": ["score", "error", "created"],
    "/admin/annotation/reportedscenario/?decision=all": ["reports (open)", "reasons", "review status"],
    "/admin/annotation/writtenscenario/?review=all": ["review status", "review note", "written"],
    "/admin/annotation/itemreport/": ["reason", "note", "decision"],
    "/admin/annotation/scenario/": ["review status", "reports", "judgment count"],
}


def test_admin_lists_show_every_column_at_1280_px_without_a_scroll_box(new_page, shot):
    context = make_context("a kitchen with a hot stove and a toddler reaching for the handle of a pan")
    long_text = "turning the stove off, lifting the toddler away and explaining calmly why the pan is dangerous"
    scenarios = make_scenarios_with_model(context, {long_text: 3.69447660446167, "leaving the toddler there": 1.2})
    # A crowd username and a long scenario text: the cells that used to widen the table.
    raters = [AnnotatorFactory(user__username="prolific-60a1b2c3d4e5f60718293a4b"), AnnotatorFactory()]
    initial = rate_page(
        raters[0], context, {scenarios[long_text].pk: (1, "text"), scenarios["leaving the toddler there"].pk: (4, "image")}
    )[scenarios[long_text].pk]
    services.judgment_reconfirm(
        annotator=raters[0], judgment_id=initial.pk, score=1, modality="both", page_token=initial.client_token
    )
    services.scenario_create(
        context=context, text="asking an adult to watch the pan while fetching a lid for it", origin="annotator",
        author=raters[0], review_status="pending",
    )
    other = make_context("a second image")
    reported = make_scenarios_with_model(other, {"a long reported scenario text that goes on and on about the picture": 3.0})
    for annotator in (AnnotatorFactory(), AnnotatorFactory()):
        services.item_report(
            annotator=annotator,
            assignment_id=services.assignment_get_or_create(annotator=annotator).pk,
            scenario_id=next(iter(reported.values())).pk,
            reason="other",
            note="the text describes something that is not in the picture at all",
        )
    admin = researcher_page(new_page)
    assert admin.viewport_size == DESKTOP and DESKTOP["width"] == 1280

    for url, wanted in LISTS.items():
        admin.goto(url)
        layout = admin.evaluate(LIST_LAYOUT_JS)
        assert layout["scrollWidth"] <= layout["clientWidth"], f"{url}: the list scrolls ({layout})"
        assert layout["pageWidth"] <= layout["viewport"], f"{url}: the page scrolls sideways"
        heads = {h["text"]: h for h in layout["heads"]}
        for name in wanted:
            assert name in heads, f"{url}: no column {name!r} in {sorted(heads)}"
            assert heads[name]["right"] <= layout["viewport"], f"{url}: {name!r} is off the screen"
        shot(admin, "24-list-" + url.strip("/").split("/")[-1].split("?")[0])

    admin.goto("/admin/annotation/disagreement/")
    row = admin.locator("#result_list tbody tr").filter(has_text="turning the stove off")
    assert row.locator("td.field-model_score_shown").inner_text() == "3.69"
    assert row.locator("td.field-delta_shown").inner_text() == "2.69"
    assert row.locator("td.field-check_answer").inner_text() == "kept 1, modality text -> both"


# --- 4. the researcher's sign-in ----------------------------------------------------------------
def test_a_researcher_signs_in_to_the_dashboard(new_page):
    user = UserFactory(username="rita")
    researcher_make(user)
    page = new_page()
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("rita")
    page.get_by_label("Password").fill("pw-for-tests")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/research/$"))
    assert not Annotator.objects.filter(user=user).exists()  # never sent through the annotator pages

"""The annotator's pages in a real browser (Debian's chromium through Playwright).

1. The whole flow: login -> consent -> rate (keyboard and clicks) -> grounding check
   (the model disagrees on one scenario) -> next image, where the model agrees on all ->
   add a scenario -> finish; then the database holds what the pages promised.
2. The rating page on a phone: no sideways scrolling, every control has a name.
3. Scenario and setting text are shown as text, never run as HTML or script.
"""

import re

import pytest

from annotation import services
from annotation.models import Annotator, Assignment, Context, Judgment, Scenario
from modelloop.models import ModelVersion
from tests.factories import AnnotatorFactory, UserFactory, make_context, predict

from .conftest import PHONE

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RATE_URL = re.compile(r"/annotate/\d+/$")
CHECK_URL = re.compile(r"/annotate/\d+/check/$")
ADD_URL = re.compile(r"/annotate/\d+/add/$")
SCORE_NAMES = {1: "1: Very unacceptable", 2: "2: Unacceptable", 3: "3: Neutral", 4: "4: Acceptable", 5: "5: Very acceptable"}
MODALITY_KEYS = {"text": "t", "image": "i", "both": "b"}

# Scripts run in the page. The accessible-name check follows the usual order: aria-labelledby,
# aria-label, <label> (wrapping or for=), title; a button's own text also names it.
UNNAMED_CONTROLS_JS = """() => {
  const text = (el) => (el ? el.textContent : "").replace(/\\s+/g, " ").trim();
  const named = (el) => {
    const by = el.getAttribute("aria-labelledby");
    if (by && by.split(/\\s+/).map((id) => text(document.getElementById(id))).join("").trim()) return true;
    if ((el.getAttribute("aria-label") || "").trim()) return true;
    if (el.labels && Array.from(el.labels).some((l) => text(l))) return true;
    if ((el.getAttribute("title") || "").trim()) return true;
    if (el.tagName === "BUTTON" && text(el)) return true;
    return false;
  };
  return Array.from(document.querySelectorAll("input, select, textarea, button"))
    .filter((el) => el.type !== "hidden" && !named(el))
    .map((el) => el.outerHTML.slice(0, 160));
}"""
IMAGE_LOADED_JS = """(img) => img.complete && img.naturalWidth > 0"""


def current_model() -> ModelVersion:
    """The current model version (transactional tests flush the one the migration made)."""
    return ModelVersion.objects.filter(is_current=True).first() or ModelVersion.objects.create(
        name="browser-test-model", scorer="zero-shot-text-baseline", is_current=True
    )


def make_scenarios_with_model(context: Context, plan: dict[str, float]) -> dict[str, Scenario]:
    """Create a context's scenarios and record the model's score for each (text -> model score)."""
    version = current_model()
    made = {}
    for text, model_score in plan.items():
        made[text] = services.scenario_create(context=context, text=text)
        predict(made[text], model_score, version)
    return made


def assert_well_formed(page) -> None:
    """Every control named, the context image loaded, no script errors."""
    assert page.evaluate(UNNAMED_CONTROLS_JS) == []
    image = page.locator("figure.context img")
    if image.count():
        image.wait_for()
        page.wait_for_function("(img) => img.complete", arg=image.element_handle())
        assert image.evaluate(IMAGE_LOADED_JS), "the context image did not load"
    assert page.errors == []


def scenario_fieldsets(page, scenarios: dict[str, Scenario]):
    """(fieldset locator, scenario) in the order the page shows them."""
    boxes = page.locator("fieldset.scenario")
    by_id = {str(s.pk): s for s in scenarios.values()}
    return [(boxes.nth(i), by_id[boxes.nth(i).get_attribute("data-scenario")]) for i in range(boxes.count())]


def rate_by_click(fieldset, score: int, modality: str) -> None:
    fieldset.get_by_role("radio", name=SCORE_NAMES[score], exact=True).check()
    fieldset.get_by_role("radio", name=modality.capitalize(), exact=True).check()


# --- 1. the whole flow ------------------------------------------------------------------------
FIRST_SETTING = "a child crossing a busy street"
FIRST_PLAN = {  # scenario -> (model score, my score, my modality)
    "holding the child's hand": (4.7, 5, "both"),
    "waiting with the child for the green light": (4.4, 5, "text"),
    "letting the child run ahead alone": (2.2, 2, "image"),
    "shouting at the child to hurry up": (4.1, 2, "text"),  # the model disagrees here
}
DISAGREED = "shouting at the child to hurry up"
SECOND_SETTING = "a dog tied up outside a shop"
SECOND_PLAN = {
    "bringing the dog a bowl of water": (4.6, 5, "both"),
    "untying the dog and walking off with it": (1.4, 1, "text"),
    "patting the dog while waiting for the owner": (3.8, 4, "image"),
}
NEW_SCENARIO = "asking the shop owner whether the dog has been outside for long"


def test_annotator_flow_login_consent_rate_check_add(new_page, shot):
    first = make_context(FIRST_SETTING)
    second = make_context(SECOND_SETTING)
    first_scenarios = make_scenarios_with_model(first, {t: m for t, (m, _, _) in FIRST_PLAN.items()})
    second_scenarios = make_scenarios_with_model(second, {t: m for t, (m, _, _) in SECOND_PLAN.items()})
    # Least-judged images come first: make the second image look a little busier.
    Context.objects.filter(pk=second.pk).update(judgment_count=1)
    user = UserFactory(username="ada")
    page = new_page()

    # Log in.
    page.goto("/")
    page.wait_for_url(re.compile(r"/accounts/login/"))
    assert_well_formed(page)
    shot(page, "01-login")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("pw-for-tests")
    page.get_by_role("button", name="Log in").click()

    # Consent: the box must be ticked. The browser refuses first (the checkbox is
    # required); with browser validation off, the server refuses and says why.
    page.wait_for_url(re.compile(r"/consent/$"))
    assert_well_formed(page)
    shot(page, "02-consent")
    agree = page.get_by_role("checkbox", name=re.compile("I agree to take part"))
    start = page.get_by_role("button", name=re.compile("start", re.I))
    start.click()
    assert page.url.endswith("/consent/")
    assert agree.evaluate("el => el.validity.valueMissing")
    page.locator("form:has(#agree)").evaluate("form => { form.noValidate = true; }")
    with page.expect_navigation():
        start.click()
    assert page.get_by_role("alert").filter(has_text="tick the box").is_visible()
    assert agree.get_attribute("aria-invalid") == "true"
    shot(page, "03-consent-error")
    assert not Annotator.objects.get(user=user).consent_version
    agree.check()
    start.click()

    # First image: rate by keyboard (first two scenarios) and by clicks (the others).
    page.wait_for_url(RATE_URL)
    assert_well_formed(page)
    assert page.get_by_text(FIRST_SETTING).first.is_visible()
    assert page.get_by_role("img", name=re.compile(FIRST_SETTING)).is_visible()
    shown = scenario_fieldsets(page, first_scenarios)
    assert 3 <= len(shown) <= 5 and {s.text for _, s in shown} == set(FIRST_PLAN)
    shot(page, "04-rate")
    # Enter on something other than a choice keeps its own meaning (here: fold the help).
    help_box = page.locator("details.help")
    help_box.locator("summary").focus()
    page.keyboard.press("Enter")
    assert help_box.evaluate("d => !d.open") and RATE_URL.search(page.url)
    page.keyboard.press("Enter")
    assert help_box.evaluate("d => d.open")
    page.locator("body").evaluate("() => document.activeElement.blur()")
    for n, (box, scenario) in enumerate(shown):
        _, score, modality = FIRST_PLAN[scenario.text]
        if n < 2:
            assert "current" in (box.get_attribute("class") or "")  # keys act on the highlighted one
            page.keyboard.press(str(score))
            page.keyboard.press(MODALITY_KEYS[modality])
            assert box.get_by_role("radio", name=SCORE_NAMES[score], exact=True).is_checked()
            assert box.get_by_role("radio", name=modality.capitalize(), exact=True).is_checked()
        else:
            rate_by_click(box, score, modality)
    shot(page, "05-rate-filled")
    page.keyboard.press("Enter")

    # The model disagreed on one scenario: its grounding check shows both scores.
    page.wait_for_url(CHECK_URL)
    assert_well_formed(page)
    shot(page, "06-check")
    checks = page.locator("fieldset.check-item")
    assert checks.count() == 1
    check = checks.first
    assert DISAGREED in check.locator("legend").inner_text()
    assert check.locator("dd.yours").inner_text().strip() == "2"
    assert check.locator("dd.model").inner_text().strip() == "4.1"
    keep = check.get_by_role("radio", name=re.compile("^Keep my score"))
    revise = check.get_by_role("radio", name=re.compile("^Revise it to"))
    assert not keep.is_checked() and not revise.is_checked()  # no default: the annotator decides
    check.get_by_role("radio", name="Both", exact=True).check()
    check.get_by_label("New score").select_option("3")
    assert revise.is_checked()  # keys.js: picking a new score means "revise it"
    page.get_by_role("button", name="Continue").click()

    # All-agree policy: one disagreement on the first image, so no add prompt; next image.
    page.wait_for_url(RATE_URL)
    assert_well_formed(page)
    assert page.get_by_role("img", name=re.compile(SECOND_SETTING)).is_visible()
    shown = scenario_fieldsets(page, second_scenarios)
    assert {s.text for _, s in shown} == set(SECOND_PLAN)
    for box, scenario in shown:
        _, score, modality = SECOND_PLAN[scenario.text]
        rate_by_click(box, score, modality)
    page.get_by_role("button", name="Submit").click()

    # The model agreed on everything: write a new scenario for the same image.
    page.wait_for_url(ADD_URL)
    assert_well_formed(page)
    assert page.get_by_role("img", name=re.compile(SECOND_SETTING)).is_visible()
    shot(page, "07-add")
    page.get_by_label(re.compile("Write another action")).fill(NEW_SCENARIO)
    page.get_by_role("button", name="Add scenario").click()

    # Nothing left for this annotator (the new scenario is their own): the finish page.
    page.wait_for_url(re.compile(r"/finish/$"))
    assert_well_formed(page)
    shot(page, "08-finish")
    assert page.get_by_role("status").filter(has_text="your scenario joins the pool").is_visible()
    assert page.get_by_role("heading", name="Thank you").is_visible()

    # The database holds what the pages showed.
    annotator = Annotator.objects.get(user=user)
    assert annotator.consent_version and annotator.consented_at
    initial = {j.scenario.text: j for j in Judgment.objects.filter(annotator=annotator, phase="initial")}
    expected = {t: (s, m) for t, (_, s, m) in {**FIRST_PLAN, **SECOND_PLAN}.items()}
    assert {t: (j.score, j.modality) for t, j in initial.items()} == expected
    assert initial[DISAGREED].delta == pytest.approx(2.1)
    reconfirmed = Judgment.objects.get(annotator=annotator, phase="reconfirmed")
    assert reconfirmed.revises == initial[DISAGREED]
    assert (reconfirmed.score, reconfirmed.modality) == (3, "both")
    assert reconfirmed.model_score == pytest.approx(4.1)
    assert initial[DISAGREED].score == 2  # the first judgment stays as given
    added = Scenario.objects.get(text=NEW_SCENARIO)
    assert (added.origin, added.author, added.context) == ("annotator", annotator, second)
    assert added.prompted_by is not None and added.prompted_by.assignment.context == second
    assert list(Assignment.objects.filter(annotator=annotator).values_list("status", flat=True)) == [
        "completed",
        "completed",
    ]


# --- 2. phone -----------------------------------------------------------------------------------
def test_rating_page_fits_a_phone_and_every_control_has_a_name(new_page):
    context = make_context("a crowded bus at rush hour, an elderly passenger standing near the doors")
    make_scenarios_with_model(
        context,
        {
            "offering one's seat to the elderly passenger": 4.8,
            "pretending to sleep so as not to give up the seat": 2.1,
            "asking loudly why nobody stands up for the old man, then filming the reactions of everyone around": 2.9,
            "holding the doors open so that the passenger can get off at the stop": 4.2,
            "Pneumonoultramicroscopicsilicovolcanoconiosis-resistant-passenger-seat-reservation-scheme": 3.0,
        },
    )
    annotator = AnnotatorFactory()
    page = new_page(viewport=PHONE, user=annotator.user, is_mobile=True, has_touch=True, device_scale_factor=2)
    page.goto("/annotate/")
    page.wait_for_url(RATE_URL)
    assert page.locator("fieldset.scenario").count() == 5
    assert_well_formed(page)
    width = page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways on a phone ({width}px wide)"
    # Also with the error state shown (a submit with nothing chosen, browser checks off).
    page.locator("#rating-form").evaluate("form => { form.noValidate = true; }")
    with page.expect_navigation():
        page.get_by_role("button", name="Submit").click()
    assert page.locator("fieldset.has-error").count() == 5
    assert_well_formed(page)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    # Choices are big enough to tap (44 CSS px, WCAG 2.5.5).
    box = page.get_by_role("radio", name=SCORE_NAMES[3]).first.locator("xpath=..").bounding_box()
    assert box["height"] >= 44 and box["width"] >= 44


# --- 3. without JavaScript -----------------------------------------------------------------------
def test_rating_and_check_work_without_javascript(new_page):
    context = make_context("a library reading room")
    scenarios = make_scenarios_with_model(
        context, {"whispering to a friend": 3.9, "playing music out loud": 1.2, "returning books on time": 4.8}
    )
    annotator = AnnotatorFactory()
    page = new_page(user=annotator.user, java_script_enabled=False)
    page.goto("/annotate/")
    page.wait_for_url(RATE_URL)
    assert page.locator(".keys-help").is_hidden()  # shortcuts are only offered when they work
    mine = {"whispering to a friend": 4, "playing music out loud": 4, "returning books on time": 5}
    for box, scenario in scenario_fieldsets(page, scenarios):
        rate_by_click(box, mine[scenario.text], "both")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url(CHECK_URL)
    check = page.locator("fieldset.check-item")
    assert check.count() == 1 and "playing music out loud" in check.inner_text()
    assert check.locator(".nojs-only").is_visible()  # the no-JavaScript hint about "Revise it to"
    check.get_by_role("radio", name="Image", exact=True).check()
    check.get_by_role("radio", name=re.compile("^Revise it to")).check()
    check.get_by_label("New score").select_option("2")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/finish/$"))
    reconfirmed = Judgment.objects.get(annotator=annotator, phase="reconfirmed")
    assert (reconfirmed.score, reconfirmed.modality, reconfirmed.revises.score) == (2, "image", 4)


# --- 4. escaping --------------------------------------------------------------------------------
HOSTILE = "<script>window.__pwned=1</script><b>bold</b>"


def test_scenario_text_is_shown_as_text_never_run(new_page):
    context = make_context(f"setting {HOSTILE}")
    scenarios = make_scenarios_with_model(context, {HOSTILE: 4.9, "a harmless action": 3.0, "another action": 3.0})
    annotator = AnnotatorFactory()
    page = new_page(user=annotator.user)
    page.goto("/annotate/")
    page.wait_for_url(RATE_URL)
    assert_well_formed(page)
    hostile_box = page.locator(f'fieldset[data-scenario="{scenarios[HOSTILE].pk}"]')
    assert HOSTILE in hostile_box.locator("legend").inner_text()
    assert hostile_box.locator("legend b, legend script").count() == 0
    assert HOSTILE in page.locator("figure.context figcaption").inner_text()
    assert page.evaluate("typeof window.__pwned") == "undefined"

    # The same text on the grounding check (the model disagrees with a 1).
    for box, scenario in scenario_fieldsets(page, scenarios):
        rate_by_click(box, 1 if scenario.text == HOSTILE else 3, "text")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url(CHECK_URL)
    assert_well_formed(page)
    assert HOSTILE in page.locator("fieldset.check-item legend").inner_text()
    assert page.locator("fieldset.check-item legend b, main script").count() == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"

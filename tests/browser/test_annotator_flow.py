"""The annotator's pages in a real browser (Debian's chromium through Playwright).

1. The annotator's day, on a desktop and on a 390x844 phone: login -> consent ->
   instructions -> practice (every missing answer marked on the page, then feedback) ->
   rate (keys on the desktop, taps on the phone; missing answers marked beside their
   controls) -> grounding check (the model disagrees on one scenario; modality pre-filled,
   keys advertised where a keyboard is used) -> next image, where the model agrees on all ->
   add a scenario -> finish; then the database holds what the pages promised. On the phone
   the image is a strip that opens on tap, the definitions are folded and the first
   scenario is inside the first screen. Screenshots of every step: var/screenshots/.
2. The rating page on a phone: no sideways scrolling, every control has a name, and the
   script's list of missing answers is the server's, word for word.
3. Scenario and setting text are shown as text, never run as HTML or script.
"""

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.test import Client

from annotation import services
from annotation.instructions import ensure_instructions
from annotation.models import (
    Annotator,
    Assignment,
    Context,
    InstructionsVersion,
    Judgment,
    OnboardingRecord,
    Scenario,
)
from modelloop.models import ModelVersion
from tests.conftest import png_bytes
from tests.factories import AnnotatorFactory, UserFactory, make_context, predict

from .conftest import PHONE

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE_OPTIONS = {"viewport": PHONE, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
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
    """Every control named, every context image loaded, no script errors."""
    assert page.evaluate(UNNAMED_CONTROLS_JS) == []
    images = page.locator("figure.context img")
    for n in range(images.count()):
        image = images.nth(n)
        page.wait_for_function("(img) => img.complete", arg=image.element_handle())
        assert image.evaluate(IMAGE_LOADED_JS), f"the image {image.get_attribute('src')} did not load"
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


PRACTICE = [  # (setting, text, expected range, expected modality, explanation)
    ("a wallet lying on a park bench", "handing the wallet in at the park office", (4, 5), "", "Returning a lost wallet is clearly fine."),
    ("a library reading room", "tearing a page out of a library book", (1, 2), "text", "Damaging a shared book is clearly wrong; the text says it all."),
]
SCREENSHOTS = Path(settings.VAR_DIR) / "screenshots"


@pytest.fixture
def snap(request):
    """snap(page, name): a screenshot of the step (the whole page; on a phone its first
    screen), kept under var/screenshots/<test>/ (CI keeps var/ as its artifacts), numbered
    in the order the test takes them."""
    folder = SCREENSHOTS / re.sub(r"[^\w.-]+", "-", request.node.name).strip("-")
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    taken = []

    def take(page, name):
        taken.append(name)
        # On an emulated touch screen, chromium draws a full-page capture as if a mouse were
        # attached (hover/pointer media flip, so the key hints appear): keep the first screen.
        touch = page.evaluate("matchMedia('(pointer: coarse)').matches")
        page.screenshot(path=str(folder / f"{len(taken):02d}-{name}.png"), full_page=not touch)

    return take


def make_onboarding():
    """The paper's instructions (the migration's; transactional tests flush them) and a practice round."""
    ensure_instructions(InstructionsVersion)
    return services.practice_round_create(
        version="practice-test-v1",
        intro="Two items with clear answers.",
        items=[
            services.PracticeItemInput(
                image_file=ContentFile(png_bytes(color=(40 + 60 * n, 120, 90)), name=f"practice{n}.png"),
                setting=setting, text=text, min_score=low, max_score=high, modality=modality, explanation=why,
            )
            for n, (setting, text, (low, high), modality, why) in enumerate(PRACTICE)
        ],
    )


def missing_errors(page) -> dict[str, list[str]]:
    """Every error message shown beside a control: {the item's label: [the control's data-field, ...]}.
    Each must sit right before its radio group, which points to it (aria-describedby)."""
    return page.evaluate("""() => {
      const found = {};
      for (const error of document.querySelectorAll(".field-error")) {
        const group = error.nextElementSibling;
        if (!group || group.getAttribute("role") !== "radiogroup") throw new Error("error not beside its control: " + error.id);
        if (group.getAttribute("aria-describedby") !== error.id) throw new Error("control does not point to " + error.id);
        const label = error.closest("fieldset").dataset.label;
        (found[label] = found[label] || []).push(group.dataset.field);
      }
      return found;
    }""")


def first_screen_bottom(page, selector) -> float:
    """Where the first element matching ``selector`` ends, with the page scrolled to the top."""
    page.evaluate("window.scrollTo(0, 0)")
    box = page.locator(selector).first.bounding_box()
    return box["y"] + box["height"]


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_annotator_day_instructions_practice_rate_check_add(new_page, snap, device):
    phone = device == "phone"
    practice_round = make_onboarding()
    first = make_context(FIRST_SETTING)
    second = make_context(SECOND_SETTING)
    first_scenarios = make_scenarios_with_model(first, {t: m for t, (m, _, _) in FIRST_PLAN.items()})
    second_scenarios = make_scenarios_with_model(second, {t: m for t, (m, _, _) in SECOND_PLAN.items()})
    # Least-judged images come first: make the second image look a little busier.
    Context.objects.filter(pk=second.pk).update(judgment_count=1)
    user = UserFactory(username="ada")
    page = new_page(**(PHONE_OPTIONS if phone else {}))
    press = (lambda locator: locator.tap()) if phone else (lambda locator: locator.click())

    # Log in.
    page.goto("/")
    page.wait_for_url(re.compile(r"/accounts/login/"))
    assert_well_formed(page)
    snap(page, "login")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("pw-for-tests")
    press(page.get_by_role("button", name="Log in"))

    # Consent: the box must be ticked. The browser refuses first (the checkbox is
    # required); with browser validation off, the server refuses and says why.
    page.wait_for_url(re.compile(r"/consent/$"))
    assert_well_formed(page)
    snap(page, "consent")
    agree = page.get_by_role("checkbox", name=re.compile("I agree to take part"))
    start = page.get_by_role("button", name=re.compile("start", re.I))
    press(start)
    assert page.url.endswith("/consent/")
    assert agree.evaluate("el => el.validity.valueMissing")
    page.locator("form:has(#agree)").evaluate("form => { form.noValidate = true; }")
    with page.expect_navigation():
        press(start)
    assert page.get_by_role("alert").filter(has_text="tick the box").is_visible()
    assert agree.get_attribute("aria-invalid") == "true"
    snap(page, "consent-error")
    assert not Annotator.objects.get(user=user).consent_version
    agree.check()
    press(start)

    # Instructions, in the paper's words: the task, the scale, the modalities, the check.
    page.wait_for_url(re.compile(r"/instructions/$"))
    assert_well_formed(page)
    text = page.locator("main").inner_text()
    for words in (
        "Rate the moral acceptability of scenarios given the image as setting",
        "select the modality (image, text, or both) that influenced your judgment the most",
        "Very unacceptable", "Very acceptable",
        "Your decision is mainly based on visual cues.",
        "removing either modality would change your judgment",
        "grounding check",
    ):
        assert words in text, words
    snap(page, "instructions")
    press(page.get_by_role("button", name=re.compile("practice items")))

    # Practice: sent empty, every missing answer of every item is marked beside its control.
    page.wait_for_url(re.compile(r"/practice/$"))
    assert_well_formed(page)
    snap(page, "practice")
    press(page.get_by_role("button", name="Check my answers"))
    assert page.url.endswith("/practice/")  # the script stopped it: nothing was sent
    both = ["score", "modality"]
    assert missing_errors(page) == {"Practice 1": both, "Practice 2": both}
    assert page.get_by_role("alert").inner_text() == (
        "Please complete 4 answers: Practice 1 (score, what helped you decide), "
        "Practice 2 (score, what helped you decide). Each is marked below, beside its question."
    )
    snap(page, "practice-errors")
    boxes = page.locator("fieldset.scenario")
    rate_by_click(boxes.nth(0), 5, "both")  # as expected
    rate_by_click(boxes.nth(1), 4, "image")  # expected: 1-2, text
    assert missing_errors(page) == {} and page.locator("#form-error").is_hidden()  # answered: the marks go
    with page.expect_navigation():
        press(page.get_by_role("button", name="Check my answers"))
    assert page.get_by_role("heading", name=re.compile("how your answers compare")).is_visible()
    feedback = page.locator("li.feedback-item")
    assert "As expected." in feedback.nth(0).inner_text()
    assert "Expected: 1 to 2, text" in feedback.nth(1).inner_text()
    assert "Different from what we expected." in feedback.nth(1).inner_text()
    assert PRACTICE[1][4] in feedback.nth(1).inner_text()
    assert_well_formed(page)
    snap(page, "practice-feedback")
    press(page.get_by_role("link", name="Start the study"))

    # The first image.
    page.wait_for_url(RATE_URL)
    assert_well_formed(page)
    assert page.get_by_text(FIRST_SETTING).first.is_visible()
    assert page.get_by_role("img", name=re.compile(FIRST_SETTING)).is_visible()
    assert "Done: 0 of 10 pages (0%)" in page.locator(".progress").inner_text()
    shown = scenario_fieldsets(page, first_scenarios)
    assert 3 <= len(shown) <= 5 and {s.text for _, s in shown} == set(FIRST_PLAN)
    help_box = page.locator("details.help")
    image = page.locator("figure.context img")
    if phone:
        # The work is above the fold: the image is a strip, the definitions folded, no key hints.
        assert first_screen_bottom(page, "fieldset.scenario") <= PHONE["height"]
        assert image.bounding_box()["height"] <= 100
        assert help_box.evaluate("d => !d.open")
        assert page.locator(".keys-help").is_hidden()
        snap(page, "rate")
        strip = page.locator("a.context-image")
        assert strip.get_attribute("aria-expanded") == "false"
        strip.tap()
        assert strip.get_attribute("aria-expanded") == "true" and image.bounding_box()["height"] > 150
        assert RATE_URL.search(page.url)  # opened in place, the form kept
        snap(page, "rate-image-open")
        strip.tap()
        assert image.bounding_box()["height"] <= 100
        help_box.locator("summary").tap()
        assert help_box.evaluate("d => d.open") and help_box.get_by_text("mainly based on visual cues").is_visible()
        help_box.locator("summary").tap()
    else:
        assert page.locator(".keys-help").is_visible()
        assert help_box.evaluate("d => d.open")
        snap(page, "rate")
        # Enter on something other than a choice keeps its own meaning (here: fold the help).
        help_box.locator("summary").focus()
        page.keyboard.press("Enter")
        assert help_box.evaluate("d => !d.open") and RATE_URL.search(page.url)
        page.keyboard.press("Enter")
        assert help_box.evaluate("d => d.open")
        page.locator("body").evaluate("() => document.activeElement.blur()")

    # Sent with one score given: every other missing answer is named, beside its control.
    first_box, _ = shown[0]
    first_box.get_by_role("radio", name=SCORE_NAMES[3], exact=True).check()
    press(page.get_by_role("button", name="Submit"))
    assert RATE_URL.search(page.url)
    expected = {"Scenario 1": ["modality"]} | {f"Scenario {n}": both for n in range(2, len(shown) + 1)}
    assert missing_errors(page) == expected
    summary = page.get_by_role("alert").inner_text()
    assert summary.startswith(f"Please complete {2 * len(shown) - 1} answers: Scenario 1 (what helped you decide), Scenario 2 (score, what helped you decide)")
    snap(page, "rate-errors")
    assert not Judgment.objects.exists()

    for n, (box, scenario) in enumerate(shown):
        _, score, modality = FIRST_PLAN[scenario.text]
        if n < 2 and not phone:
            page.locator("body").evaluate("() => document.activeElement.blur()")
            assert "current" in (box.get_attribute("class") or "")  # keys act on the highlighted one
            page.keyboard.press(str(score))
            page.keyboard.press(MODALITY_KEYS[modality])
            assert box.get_by_role("radio", name=SCORE_NAMES[score], exact=True).is_checked()
            assert box.get_by_role("radio", name=modality.capitalize(), exact=True).is_checked()
        else:
            rate_by_click(box, score, modality)
    assert missing_errors(page) == {} and page.locator("#form-error").is_hidden()
    snap(page, "rate-filled")
    if phone:
        press(page.get_by_role("button", name="Submit"))
    else:
        page.keyboard.press("Enter")

    # The model disagreed on one scenario: its grounding check shows both scores, the
    # modality given a moment ago is filled in, the keys are advertised where they work.
    page.wait_for_url(CHECK_URL)
    assert_well_formed(page)
    snap(page, "check")
    checks = page.locator("fieldset.check-item")
    assert checks.count() == 1
    check = checks.first
    assert DISAGREED in check.locator("legend").inner_text()
    assert check.locator("dd.yours").inner_text().strip() == "2"
    assert check.locator("dd.model").inner_text().strip() == "4.1"
    assert check.get_by_role("radio", name="Text", exact=True).is_checked()  # the first answer
    assert "Done: 0 of 10 pages" in page.locator(".progress").inner_text()
    keep = check.get_by_role("radio", name=re.compile("^Keep my score"))
    revise = check.get_by_role("radio", name=re.compile("^Revise it to"))
    assert not keep.is_checked() and not revise.is_checked()  # no default: the annotator decides
    if phone:
        assert page.locator(".keys-help").is_hidden()
        assert first_screen_bottom(page, "fieldset.check-item legend") <= PHONE["height"]
        check.get_by_role("radio", name="Both", exact=True).tap()
        check.get_by_label("New score").select_option("3")
        assert revise.is_checked()  # page scripts: picking a new score means "revise it"
        press(page.get_by_role("button", name="Continue"))
    else:
        assert "keep your score" in page.locator(".keys-help").inner_text()
        page.keyboard.press("2")  # the first score again: keep it
        assert keep.is_checked()
        page.keyboard.press("3")  # another score: revise to it
        page.keyboard.press("b")
        assert revise.is_checked() and check.get_by_label("New score").input_value() == "3"
        assert check.get_by_role("radio", name="Both", exact=True).is_checked()
        page.keyboard.press("Enter")

    # All-agree policy: one disagreement on the first image, so no add prompt; next image.
    page.wait_for_url(RATE_URL)
    assert_well_formed(page)
    assert page.get_by_role("img", name=re.compile(SECOND_SETTING)).is_visible()
    progress = page.locator(".progress").inner_text()
    assert "Done: 1 of 10 pages (10%)" in progress and "min left at your pace" in progress
    shown = scenario_fieldsets(page, second_scenarios)
    assert {s.text for _, s in shown} == set(SECOND_PLAN)
    for box, scenario in shown:
        _, score, modality = SECOND_PLAN[scenario.text]
        rate_by_click(box, score, modality)
    press(page.get_by_role("button", name="Submit"))

    # The model agreed on everything: write a new scenario for the same image.
    page.wait_for_url(ADD_URL)
    assert_well_formed(page)
    assert page.get_by_role("img", name=re.compile(SECOND_SETTING)).is_visible()
    assert "Done: 1 of 10 pages" in page.locator(".progress").inner_text()
    snap(page, "add")
    page.get_by_label(re.compile("Write another action")).fill(NEW_SCENARIO)
    press(page.get_by_role("button", name="Add scenario"))

    # Nothing left for this annotator (the new scenario is their own): the finish page.
    page.wait_for_url(re.compile(r"/finish/$"))
    assert_well_formed(page)
    snap(page, "finish")
    assert page.get_by_role("status").filter(has_text="your scenario joins the pool").is_visible()
    assert page.get_by_role("heading", name="Thank you").is_visible()

    # The database holds what the pages showed, and nothing of the practice.
    annotator = Annotator.objects.get(user=user)
    assert annotator.consent_version and annotator.consented_at
    records = {(r.step, r.version): r for r in OnboardingRecord.objects.filter(annotator=annotator)}
    assert set(records) == {("instructions", InstructionsVersion.objects.get().version), ("practice", practice_round.version)}
    answers = records[("practice", practice_round.version)].answers
    assert [(a["score"], a["modality"], a["score_ok"], a["modality_ok"]) for a in answers] == [
        (5, "both", True, True), (4, "image", False, False)
    ]
    initial = {j.scenario.text: j for j in Judgment.objects.filter(annotator=annotator, phase="initial")}
    expected = {t: (s, m) for t, (_, s, m) in {**FIRST_PLAN, **SECOND_PLAN}.items()}
    assert {t: (j.score, j.modality) for t, j in initial.items()} == expected
    assert initial[DISAGREED].delta == pytest.approx(2.1)
    reconfirmed = Judgment.objects.get(annotator=annotator, phase="reconfirmed")
    assert reconfirmed.revises == initial[DISAGREED]
    assert (reconfirmed.score, reconfirmed.modality) == (3, "both")
    assert reconfirmed.model_score == pytest.approx(4.1)
    assert initial[DISAGREED].score == 2  # the first judgment stays as given
    assert Judgment.objects.count() == len(expected) + 1  # practice answers are no judgments
    added = Scenario.objects.get(text=NEW_SCENARIO)
    assert (added.origin, added.author, added.context) == ("annotator", annotator, second)
    assert added.prompted_by is not None and added.prompted_by.assignment.context == second
    assert list(Assignment.objects.filter(annotator=annotator).values_list("status", flat=True)) == [
        "completed",
        "completed",
    ]


# --- 2. phone -----------------------------------------------------------------------------------
def test_rating_page_fits_a_phone_and_every_control_has_a_name(new_page, snap):
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
    page = new_page(user=annotator.user, **PHONE_OPTIONS)
    page.goto("/annotate/")
    page.wait_for_url(RATE_URL)
    assert page.locator("fieldset.scenario").count() == 5
    assert_well_formed(page)
    width = page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways on a phone ({width}px wide)"
    assert first_screen_bottom(page, "fieldset.scenario") <= PHONE["height"]  # long texts too
    # Also with every error shown (a submit with nothing chosen).
    page.get_by_role("button", name="Submit").tap()
    assert page.locator("fieldset.has-error").count() == 5
    assert page.locator(".field-error").count() == 10
    assert_well_formed(page)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    snap(page, "phone-errors")
    # The script's summary is the one the server writes for the same form, word for word.
    client = Client()
    client.force_login(annotator.user)
    html = page.content()
    form = {name: re.search(rf'name="{name}" value="([^"]*)"', html).group(1) for name in ("page_token",)}
    served = client.post(urlsplit(page.url).path, form).content.decode()
    assert re.search(r'id="form-error">([^<]*)<', served).group(1) == page.locator("#form-error").inner_text()
    assert served.count('class="error field-error"') == 10
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
    assert page.locator("details.help").evaluate("d => d.open")
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

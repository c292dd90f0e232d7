"""After consent: the instructions and the practice round, versioned like the consent,
edited by researchers in the admin; practice answers get feedback and never become data."""

import re

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation import selectors, services
from annotation.models import InstructionsVersion, Judgment, OnboardingRecord, PracticeRound, Scenario
from morale.roles import researcher_make
from tests.conftest import png_bytes
from tests.factories import AnnotatorFactory, UserFactory, make_context, make_scenarios

pytestmark = pytest.mark.django_db

PRACTICE = [  # (text, min, max, modality)
    ("returning a lost wallet to its owner", 4, 5, ""),
    ("tearing a page out of a library book", 1, 2, "text"),
]


def make_practice(version="practice-v1"):
    return services.practice_round_create(
        version=version,
        intro="A few items with clear answers.",
        items=[
            services.PracticeItemInput(
                image_file=ContentFile(png_bytes(), name=f"p{n}.png"), setting=f"setting {n}", text=text,
                min_score=low, max_score=high, modality=modality, explanation=f"why {n}",
            )
            for n, (text, low, high, modality) in enumerate(PRACTICE)
        ],
    )


@pytest.fixture
def newcomer(client):
    """A consented annotator who has not read the instructions or practised yet, logged in."""
    annotator = AnnotatorFactory(onboarded=False)
    client.force_login(annotator.user)
    make_scenarios(make_context(), 3)
    return annotator


def practice_post(client, answers: dict[int, tuple[str, str]]):
    """Send the practice page with (score, modality) per item position; omitted items are left empty."""
    page = client.get(reverse("annotation:practice")).content.decode()
    round_id = re.search(r'name="practice_round" value="(\d+)"', page).group(1)
    ids = list(dict.fromkeys(re.findall(r'name="score-p(\d+)"', page)))
    data = {"practice_round": round_id}
    for n, (score, modality) in answers.items():
        data[f"score-p{ids[n]}"], data[f"modality-p{ids[n]}"] = score, modality
    return client.post(reverse("annotation:practice"), data), data


def test_the_migration_installs_the_papers_instructions():
    instructions = InstructionsVersion.objects.get()
    assert "Rate the moral acceptability of scenarios given the image as setting" in instructions.task
    assert "grounding check" in instructions.grounding_check


def test_after_consent_come_the_instructions_then_the_practice_then_the_first_page(client, newcomer):
    make_practice()
    assert client.get(reverse("annotation:next")).url == reverse("annotation:instructions")
    page = client.get(reverse("annotation:instructions")).content.decode()
    for words in ("Very unacceptable", "Very acceptable", "mainly based on visual cues", "grounding check",
                  "1 point or more from yours", "try a few practice items"):
        assert words in page, words
    version = InstructionsVersion.objects.get().version
    assert client.post(reverse("annotation:instructions"), {"version": version}).url == reverse("annotation:next")
    assert client.get(reverse("annotation:next")).url == reverse("annotation:practice")
    response, _ = practice_post(client, {0: ("5", "both"), 1: ("2", "text")})
    assert response.url == reverse("annotation:practice")
    assert "Start the study" in client.get(response.url).content.decode()
    assert re.search(r"/annotate/\d+/$", client.get(reverse("annotation:next")).url)


def test_each_version_is_shown_once_and_an_edit_in_place_sends_nobody_again(client, newcomer):
    current = InstructionsVersion.objects.get()
    services.instructions_mark_read(annotator=newcomer, version=current.version)
    services.instructions_mark_read(annotator=newcomer, version=current.version)  # idempotent
    assert OnboardingRecord.objects.filter(annotator=newcomer).count() == 1
    InstructionsVersion.objects.filter(pk=current.pk).update(task="Fixed a typo.")
    assert "/annotate/" in client.get(reverse("annotation:next")).url
    InstructionsVersion.objects.create(version="2027-01-v2", task="New task text.", scale="s", modality="m", grounding_check="g")
    assert client.get(reverse("annotation:next")).url == reverse("annotation:instructions")
    assert "New task text." in client.get(reverse("annotation:instructions")).content.decode()


def test_a_new_version_never_interrupts_an_open_page(client, newcomer):
    services.instructions_mark_read(annotator=newcomer, version=InstructionsVersion.objects.get().version)
    rate_url = client.get(reverse("annotation:next")).url
    InstructionsVersion.objects.create(version="2027-01-v2", task="t", scale="s", modality="m", grounding_check="g")
    assert client.get(rate_url).status_code == 200  # the page in hand stays; the next one waits
    assert client.get(reverse("annotation:next")).url == reverse("annotation:instructions")


def test_instructions_read_again_lead_back_to_the_work(client, newcomer):
    services.instructions_mark_read(annotator=newcomer, version=InstructionsVersion.objects.get().version)
    page = client.get(reverse("annotation:instructions")).content.decode()
    assert "Back to the study" in page and 'name="version"' not in page


def test_instructions_sent_for_an_older_version_show_the_new_one_and_record_nothing(client, newcomer):
    old = InstructionsVersion.objects.get().version
    InstructionsVersion.objects.create(version="2027-01-v2", task="The new words.", scale="s", modality="m", grounding_check="g")
    response = client.post(reverse("annotation:instructions"), {"version": old})
    assert response.status_code == 409 and "The new words." in response.content.decode()
    assert not OnboardingRecord.objects.exists()


def test_every_missing_practice_answer_is_named_beside_its_control(client, newcomer):
    make_practice()
    response, data = practice_post(client, {0: ("4", "")})
    ids = [item.pk for item in PracticeRound.objects.get().items.all()]
    assert response.status_code == 400
    page = response.content.decode()
    assert f'id="sp{ids[0]}-modality-error"' in page and f'id="sp{ids[0]}-score-error"' not in page
    assert f'id="sp{ids[1]}-score-error"' in page and f'id="sp{ids[1]}-modality-error"' in page
    assert "Please complete 3 answers: Practice 1 (what helped you decide), Practice 2 (score, what helped you decide)." in page
    assert page.count('value="4" required checked') == 1  # what was typed is still there
    assert not OnboardingRecord.objects.filter(step="practice").exists()


@pytest.mark.parametrize("bad", ["0", "6", "2.5", "abc"])
def test_bad_practice_scores_are_refused(client, newcomer, bad):
    make_practice()
    response, _ = practice_post(client, {0: (bad, "text"), 1: ("1", "text")})
    assert response.status_code == 400 and "whole number from 1 to 5" in response.content.decode()
    assert not OnboardingRecord.objects.filter(step="practice").exists()


def test_practice_answers_get_feedback_and_never_become_judgments(client, newcomer):
    practice_round = make_practice()
    before = sorted(Scenario.objects.values_list("pk", "judgment_count"))
    _, data = practice_post(client, {0: ("5", "image"), 1: ("4", "image")})
    record = OnboardingRecord.objects.get(annotator=newcomer, step="practice", version=practice_round.version)
    assert [(a["score_ok"], a["modality_ok"]) for a in record.answers] == [(True, True), (False, False)]
    page = client.get(reverse("annotation:practice")).content.decode()
    assert "within the expected range on 1 of 2" in page and "Expected: 1 to 2, text" in page and "why 1" in page
    assert not Judgment.objects.exists()
    assert sorted(Scenario.objects.values_list("pk", "judgment_count")) == before
    changed = {k: ("1" if k.startswith("score-") else v) for k, v in data.items()}
    again = client.post(reverse("annotation:practice"), changed)  # sent again: the first answers stay
    assert again.status_code == 200 and OnboardingRecord.objects.get(step="practice").answers == record.answers


def test_practice_is_skipped_when_the_setting_turns_it_off(client, newcomer, settings):
    settings.MORALE_PRACTICE_ENABLED = False
    make_practice()
    services.instructions_mark_read(annotator=newcomer, version=InstructionsVersion.objects.get().version)
    assert "/annotate/" in client.get(reverse("annotation:next")).url
    assert client.get(reverse("annotation:practice")).url == reverse("annotation:next")


def test_a_practice_round_without_items_is_skipped(client, newcomer):
    PracticeRound.objects.create(version="empty", intro="nothing yet")
    services.instructions_mark_read(annotator=newcomer, version=InstructionsVersion.objects.get().version)
    assert "/annotate/" in client.get(reverse("annotation:next")).url


def test_practice_items_changed_while_answering_show_the_new_round(client, newcomer):
    old = make_practice()
    page = client.get(reverse("annotation:practice")).content.decode()
    assert f'name="practice_round" value="{old.pk}"' in page
    make_practice(version="practice-v2")
    response = client.post(reverse("annotation:practice"), {"practice_round": str(old.pk)})
    assert response.status_code == 409 and "were changed while you answered" in response.content.decode()
    assert not OnboardingRecord.objects.filter(step="practice").exists()


def test_the_practice_service_refuses_a_round_not_answered_in_full():
    practice_round = make_practice()
    first = practice_round.items.first()
    with pytest.raises(ValidationError, match="every practice item"):
        services.practice_submit(
            annotator=AnnotatorFactory(onboarded=False), practice_round_id=practice_round.pk,
            answers=[services.PracticeAnswer(item_id=first.pk, score=3, modality="text")],
        )
    assert not OnboardingRecord.objects.filter(step="practice").exists()


# --- the researcher's side: the admin ---------------------------------------------------------
@pytest.fixture
def researcher_client(client):
    user = UserFactory(username="researcher-x")
    researcher_make(user)
    client.force_login(user)
    return client


def test_a_researcher_edits_the_instructions_and_saves_a_new_version(researcher_client):
    current = InstructionsVersion.objects.get()
    url = reverse("admin:annotation_instructionsversion_change", args=[current.pk])
    assert researcher_client.get(url).status_code == 200
    fields = {"version": current.version, "task": "Edited task.", "scale": current.scale,
              "modality": current.modality, "grounding_check": current.grounding_check}
    assert researcher_client.post(url, fields).status_code == 302
    assert InstructionsVersion.objects.get().task == "Edited task."
    assert researcher_client.post(url, {**fields, "version": "2027-02-v2", "_saveasnew": "1"}).status_code == 302
    assert list(InstructionsVersion.objects.values_list("version", flat=True)) == ["2027-02-v2", current.version]
    listing = researcher_client.get(reverse("admin:annotation_instructionsversion_changelist")).content.decode()
    assert "2027-02-v2" in listing


def practice_form(image, **fields):
    return {
        "version": "practice-admin", "intro": "Try these.",
        "items-TOTAL_FORMS": "1", "items-INITIAL_FORMS": "0",
        "items-0-position": "0", "items-0-image": image, "items-0-setting": "a shop",
        "items-0-text": "stealing from the till", "items-0-min_score": "1", "items-0-max_score": "1",
        "items-0-modality": "", "items-0-explanation": "Theft is wrong.", **fields,
    }


def test_a_researcher_adds_a_practice_round_in_the_admin_and_annotators_get_it(researcher_client):
    upload = SimpleUploadedFile("shop.png", png_bytes(), content_type="image/png")
    response = researcher_client.post(reverse("admin:annotation_practiceround_add"), practice_form(upload))
    assert response.status_code == 302, response.content.decode()[:2000]
    practice_round = PracticeRound.objects.get(version="practice-admin")
    assert practice_round.items.get().text == "stealing from the till"
    assert selectors.onboarding_next_step(annotator=AnnotatorFactory(onboarded=False)) == "instructions"
    assert selectors.practice_current() == practice_round


def test_a_practice_image_that_is_no_image_is_refused_in_the_admin(researcher_client):
    upload = SimpleUploadedFile("shop.png", b"not an image at all", content_type="image/png")
    response = researcher_client.post(reverse("admin:annotation_practiceround_add"), practice_form(upload))
    assert response.status_code == 200 and not PracticeRound.objects.exists()


def test_the_copy_action_makes_a_new_version_with_the_same_items(researcher_client):
    original = make_practice()
    response = researcher_client.post(
        reverse("admin:annotation_practiceround_changelist"),
        {"action": "copy_as_new_version", "_selected_action": [original.pk], "new_version": "practice-v2"},
    )
    assert response.status_code == 302
    copy = PracticeRound.objects.get(version="practice-v2")
    assert [(i.text, i.image.name) for i in copy.items.all()] == [(i.text, i.image.name) for i in original.items.all()]
    taken = researcher_client.post(
        reverse("admin:annotation_practiceround_changelist"),
        {"action": "copy_as_new_version", "_selected_action": [original.pk], "new_version": "practice-v2"},
        follow=True,
    )
    assert "already exists" in taken.content.decode() and PracticeRound.objects.count() == 2


def test_researchers_see_who_did_which_version_but_cannot_change_it(researcher_client):
    annotator = AnnotatorFactory()
    record = OnboardingRecord.objects.filter(annotator=annotator).first()
    listing = researcher_client.get(reverse("admin:annotation_onboardingrecord_changelist")).content.decode()
    assert record.version in listing
    change = reverse("admin:annotation_onboardingrecord_change", args=[record.pk])
    assert researcher_client.post(change, {"version": "forged"}).status_code == 403
    assert OnboardingRecord.objects.get(pk=record.pk).version == record.version

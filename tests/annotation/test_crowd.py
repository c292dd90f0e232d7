"""Crowd platforms and sign-up: entry URLs, completion codes, the session cap, self-signup."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from annotation import crowd, services
from annotation.models import Annotator, Assignment
from tests.factories import AnnotatorFactory, make_context, make_scenarios

pytestmark = pytest.mark.django_db

PROLIFIC_PID = "5f2b9c1e8a7d6e0012345678"


@pytest.fixture
def crowd_on(settings):
    settings.MORALE_CROWD_PLATFORMS = ["prolific", "mturk"]
    return settings


def enter(client, **query):
    return client.get(reverse("annotation:crowd_entry"), query)


def test_prolific_entry_creates_the_annotator_and_logs_in_without_signup(client, crowd_on):
    response = enter(client, PROLIFIC_PID=PROLIFIC_PID, STUDY_ID="s1", SESSION_ID="x")
    assert response.status_code == 302 and response.url == reverse("annotation:start")
    annotator = Annotator.objects.get(platform="prolific", platform_participant_id=PROLIFIC_PID)
    assert not annotator.user.has_usable_password() and not annotator.user.is_staff
    assert int(client.session["_auth_user_id"]) == annotator.user_id
    # Next stop: the consent page, as for any new annotator.
    assert client.get(reverse("annotation:next")).url == reverse("annotation:consent")


def test_entering_again_continues_the_same_annotator(client, crowd_on):
    enter(client, PROLIFIC_PID=PROLIFIC_PID)
    client.logout()
    enter(client, PROLIFIC_PID=PROLIFIC_PID)
    assert Annotator.objects.filter(platform_participant_id=PROLIFIC_PID).count() == 1


def test_mturk_entry_and_preview(client, crowd_on):
    preview = enter(client, workerId="A1B2C3D4E5", assignmentId=crowd.MTURK_PREVIEW_ASSIGNMENT, hitId="h")
    assert preview.status_code == 200 and b"Accept the HIT" in preview.content
    assert not Annotator.objects.exists()
    response = enter(client, workerId="A1B2C3D4E5", assignmentId="3XYZ", hitId="h")
    assert response.status_code == 302
    assert Annotator.objects.get().platform == "mturk"


def test_entry_is_off_unless_the_platform_is_enabled(client, settings):
    settings.MORALE_CROWD_PLATFORMS = ["mturk"]
    response = enter(client, PROLIFIC_PID=PROLIFIC_PID)
    assert response.status_code == 403 and b"does not take participants" in response.content
    assert not Annotator.objects.exists()


@pytest.mark.parametrize("pid", ["", "../etc", "a b", "x" * 65, "<script>"])
def test_malformed_participant_ids_are_refused(client, crowd_on, pid):
    response = enter(client, PROLIFIC_PID=pid)
    assert response.status_code == 403
    assert b"<script>" not in response.content
    assert not get_user_model().objects.exists()


def test_a_link_without_any_participant_id_says_so(client, crowd_on):
    response = enter(client)
    assert response.status_code == 400 and b"missing its participant id" in response.content


def test_prolific_study_id_must_match_when_set(client, crowd_on):
    crowd_on.MORALE_PROLIFIC_STUDY_ID = "study-1"
    assert enter(client, PROLIFIC_PID=PROLIFIC_PID, STUDY_ID="other").status_code == 403
    assert enter(client, PROLIFIC_PID=PROLIFIC_PID, STUDY_ID="study-1").status_code == 302


def test_entry_replaces_another_logged_in_user(client, crowd_on):
    other = AnnotatorFactory()
    client.force_login(other.user)
    enter(client, PROLIFIC_PID=PROLIFIC_PID)
    annotator = Annotator.objects.get(platform_participant_id=PROLIFIC_PID)
    assert int(client.session["_auth_user_id"]) == annotator.user_id


def test_a_screened_out_participant_re_entering_gets_no_work(client, crowd_on):
    enter(client, PROLIFIC_PID=PROLIFIC_PID)
    annotator = Annotator.objects.get()
    services.annotator_record_consent(annotator=annotator, version=crowd_on.MORALE_CONSENT_VERSION)
    Annotator.objects.filter(pk=annotator.pk).update(status=Annotator.Status.SCREENED_OUT)
    enter(client, PROLIFIC_PID=PROLIFIC_PID)
    assert client.get(reverse("annotation:next")).status_code == 403


def test_crowd_annotator_checks_the_entry_before_it_writes_and_is_idempotent(crowd_on):
    with pytest.raises(crowd.CrowdEntryRefused, match="valid participant id"):
        services.crowd_annotator(platform="prolific", participant_id="a b")
    assert not get_user_model().objects.exists()
    first = services.crowd_annotator(platform="mturk", participant_id="A1B2C3D4E5")
    assert services.crowd_annotator(platform="mturk", participant_id="A1B2C3D4E5") == first
    assert first.user.username == "mturk-A1B2C3D4E5" and crowd.reserved_username(first.user.username)


def test_a_squatted_username_is_refused_not_a_crash(client, crowd_on):
    get_user_model().objects.create_user(username=f"prolific-{PROLIFIC_PID}", password="x-long-password")
    response = enter(client, PROLIFIC_PID=PROLIFIC_PID)
    assert response.status_code == 403 and b"contact the research team" in response.content


# --- completion code ------------------------------------------------------------------------
def consented_crowd_annotator(client, settings):
    enter(client, PROLIFIC_PID=PROLIFIC_PID)
    annotator = Annotator.objects.get()
    services.annotator_record_consent(annotator=annotator, version=settings.MORALE_CONSENT_VERSION)
    return annotator


def test_finish_page_shows_the_study_code_and_the_prolific_return_link(client, crowd_on):
    crowd_on.MORALE_COMPLETION_CODE = "C1A2B3"
    consented_crowd_annotator(client, crowd_on)
    page = client.get(reverse("annotation:finish")).content.decode()
    assert "C1A2B3" in page
    assert "https://app.prolific.com/submissions/complete?cc=C1A2B3" in page


def test_without_a_study_code_each_annotator_gets_a_stable_unguessable_code(client, crowd_on):
    annotator = consented_crowd_annotator(client, crowd_on)
    other = AnnotatorFactory()
    code = crowd.completion_code_for(annotator)
    assert code == crowd.completion_code_for(Annotator.objects.get(pk=annotator.pk))
    assert code != crowd.completion_code_for(other) and len(code) == 12
    assert code in client.get(reverse("annotation:finish")).content.decode()
    crowd_on.SECRET_KEY = "another-secret-key-for-this-test-only-0123456789"
    assert crowd.completion_code_for(annotator) != code


def test_local_accounts_see_no_code_unless_one_is_set(client, settings):
    annotator = AnnotatorFactory()
    services.annotator_record_consent(annotator=annotator, version=settings.MORALE_CONSENT_VERSION)
    client.force_login(annotator.user)
    assert b"completion code" not in client.get(reverse("annotation:finish")).content


# --- cap on concurrent sessions -------------------------------------------------------------
def consented(annotator, settings):
    services.annotator_record_consent(annotator=annotator, version=settings.MORALE_CONSENT_VERSION)
    return annotator


def test_the_cap_turns_away_a_new_annotator_while_others_hold_pages(client, settings):
    settings.MORALE_MAX_CONCURRENT_ANNOTATORS = 2
    for _ in range(3):
        make_scenarios(make_context(), 4)
    first, second, third = (consented(AnnotatorFactory(), settings) for _ in range(3))
    assert services.assignment_get_or_create(annotator=first) is not None
    assert services.assignment_get_or_create(annotator=second) is not None
    with pytest.raises(services.StudyFull):
        services.assignment_get_or_create(annotator=third)
    # Those already working keep their page.
    assert services.assignment_get_or_create(annotator=first) is not None
    client.force_login(third.user)
    response = client.get(reverse("annotation:next"))
    assert response.status_code == 503 and response["Retry-After"] == "60"
    assert b"full right now" in response.content
    assert not Assignment.objects.filter(annotator=third).exists()


def test_expired_pages_do_not_count_against_the_cap(settings):
    settings.MORALE_MAX_CONCURRENT_ANNOTATORS = 1
    for _ in range(2):
        make_scenarios(make_context(), 4)
    first, second = (consented(AnnotatorFactory(), settings) for _ in range(2))
    page = services.assignment_get_or_create(annotator=first)
    Assignment.objects.filter(pk=page.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.assignment_get_or_create(annotator=second) is not None


def test_no_cap_by_default(settings):
    assert settings.MORALE_MAX_CONCURRENT_ANNOTATORS == 0
    for _ in range(3):
        make_scenarios(make_context(), 4)
    for _ in range(3):
        assert services.assignment_get_or_create(annotator=consented(AnnotatorFactory(), settings)) is not None


# --- self-signup ----------------------------------------------------------------------------
def test_self_signup_is_off_by_default(client, settings):
    assert settings.MORALE_SELF_SIGNUP is False
    assert client.get(reverse("annotation:signup")).status_code == 404
    response = client.post(
        reverse("annotation:signup"), {"username": "eve", "password1": "a-long-pass-123", "password2": "a-long-pass-123"}
    )
    assert response.status_code == 404 and not get_user_model().objects.exists()
    assert b"Create an account" not in client.get(reverse("login")).content


def test_self_signup_when_on_creates_a_non_staff_annotator(client, settings):
    settings.MORALE_SELF_SIGNUP = True
    assert b"Create an account" in client.get(reverse("login")).content
    response = client.post(
        reverse("annotation:signup"), {"username": "ada", "password1": "a-long-pass-123", "password2": "a-long-pass-123"}
    )
    assert response.status_code == 302
    annotator = Annotator.objects.get(user__username="ada")
    assert not annotator.user.is_staff and annotator.platform == "local"


def test_self_signup_refuses_reserved_and_weak_names(client, settings):
    settings.MORALE_SELF_SIGNUP = True
    reserved = client.post(
        reverse("annotation:signup"),
        {"username": f"prolific-{PROLIFIC_PID}", "password1": "a-long-pass-123", "password2": "a-long-pass-123"},
    )
    assert reserved.status_code == 400 and b"reserved" in reserved.content
    weak = client.post(reverse("annotation:signup"), {"username": "bob", "password1": "123", "password2": "123"})
    assert weak.status_code == 400
    assert not get_user_model().objects.exists()

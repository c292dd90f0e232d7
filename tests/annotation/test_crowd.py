"""Crowd platforms and sign-up: entry URLs, session ids, rate limits, first pages, the
completion rule and codes, the session caps, self-signup."""

import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation import crowd, services
from annotation.models import Annotator, Assignment
from tests.factories import AnnotatorFactory, make_context, make_scenarios, mark_onboarded

pytestmark = pytest.mark.django_db

PROLIFIC_PID = "5f2b9c1e8a7d6e0012345678"


@pytest.fixture
def crowd_on(settings):
    settings.MORALE_CROWD_PLATFORMS = ["prolific", "mturk"]
    return settings


def enter(client, address="192.0.2.10", headers=None, **query):
    return client.get(reverse("annotation:crowd_entry"), query, REMOTE_ADDR=address, **(headers or {}))


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


def test_a_get_never_replaces_someone_elses_session_it_asks_first(crowd_on):
    """Login CSRF: a link (or an <img>) on another site must not log a researcher out and in
    as a participant. The GET shows a confirmation; only its POST, with the CSRF token, switches."""
    client = Client(enforce_csrf_checks=True)
    researcher = get_user_model().objects.create_user(username="rita", password="x-long-password", is_staff=True)
    client.force_login(researcher)
    query = {"PROLIFIC_PID": PROLIFIC_PID, "STUDY_ID": "s1", "SESSION_ID": "sess1", "unrelated": "x"}
    page = enter(client, **query)
    assert page.status_code == 200 and b"signed in as someone else" in page.content
    assert int(client.session["_auth_user_id"]) == researcher.pk
    assert not Annotator.objects.exists()
    html = page.content.decode()
    for name, value in [("PROLIFIC_PID", PROLIFIC_PID), ("STUDY_ID", "s1"), ("SESSION_ID", "sess1")]:
        assert f'name="{name}" value="{value}"' in html
    assert "unrelated" not in html  # only the entry URL's own parameters are passed on

    forged = client.post(reverse("annotation:crowd_entry"), query)  # a cross-site form: no CSRF token
    assert forged.status_code == 403 and int(client.session["_auth_user_id"]) == researcher.pk

    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    confirmed = client.post(reverse("annotation:crowd_entry"), {**query, "csrfmiddlewaretoken": token})
    assert confirmed.status_code == 302 and confirmed.url == reverse("annotation:start")
    annotator = Annotator.objects.get(platform_participant_id=PROLIFIC_PID)
    assert int(client.session["_auth_user_id"]) == annotator.user_id


def test_the_confirmation_is_skipped_for_the_same_participant_and_refused_links_say_so(client, crowd_on):
    enter(client, PROLIFIC_PID=PROLIFIC_PID, SESSION_ID="sess1")
    again = enter(client, PROLIFIC_PID=PROLIFIC_PID, SESSION_ID="sess1")
    assert again.status_code == 302 and again.url == reverse("annotation:start")
    client.force_login(AnnotatorFactory().user)
    assert enter(client, PROLIFIC_PID="a b").status_code == 403  # no confirmation for a link that cannot work


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


# --- the platform's session id -------------------------------------------------------------
def test_the_session_id_is_stored_and_must_come_back_on_re_entry(client, crowd_on):
    enter(client, PROLIFIC_PID=PROLIFIC_PID, SESSION_ID="sess1")
    assert Annotator.objects.get().platform_session_id == "sess1"
    client.logout()
    # Someone who knows only the participant id (a bearer credential) no longer gets in.
    for other in ({"SESSION_ID": "sess2"}, {}):
        refused = enter(client, PROLIFIC_PID=PROLIFIC_PID, **other)
        assert refused.status_code == 403 and b"another session" in refused.content
        assert "_auth_user_id" not in client.session
    assert enter(client, PROLIFIC_PID=PROLIFIC_PID, SESSION_ID="sess1").status_code == 302
    assert Annotator.objects.get().platform_session_id == "sess1"


def test_mturk_assignment_id_is_the_session_id(client, crowd_on):
    enter(client, workerId="A1B2C3D4E5", assignmentId="3XYZ", hitId="h")
    client.logout()
    assert enter(client, workerId="A1B2C3D4E5", assignmentId="3OTHER", hitId="h").status_code == 403
    assert enter(client, workerId="A1B2C3D4E5", assignmentId="3XYZ", hitId="h").status_code == 302


def test_a_participant_who_came_without_a_session_id_is_bound_to_the_first_one(crowd_on):
    first = services.crowd_annotator(platform="prolific", participant_id=PROLIFIC_PID)
    assert first.platform_session_id == ""
    assert services.crowd_annotator(platform="prolific", participant_id=PROLIFIC_PID) == first
    services.crowd_annotator(platform="prolific", participant_id=PROLIFIC_PID, session_id="s1")
    for later in ("s2", None):
        with pytest.raises(crowd.CrowdEntryRefused, match="another session"):
            services.crowd_annotator(platform="prolific", participant_id=PROLIFIC_PID, session_id=later)
    assert Annotator.objects.get().platform_session_id == "s1"


@pytest.mark.parametrize("session", ["", "a b", "<x>", "s" * 65])
def test_malformed_session_ids_are_refused(client, crowd_on, session):
    response = enter(client, PROLIFIC_PID=PROLIFIC_PID, SESSION_ID=session)
    assert response.status_code == 403 and b"session id is not valid" in response.content
    assert not Annotator.objects.exists()


# --- rate limits on creating participants ------------------------------------------------------
def test_a_flood_from_one_address_makes_at_most_the_limit_with_default_settings(crowd_on):
    """The issue's probe: distinct PROLIFIC_PIDs from one address made one annotator each."""
    assert crowd_on.MORALE_CROWD_NEW_PER_ADDRESS == "10/h"
    statuses = [enter(Client(), address="203.0.113.5", PROLIFIC_PID=f"flood{i}").status_code for i in range(25)]
    assert statuses == [302] * 10 + [429] * 15
    assert Annotator.objects.count() == 10 and get_user_model().objects.count() == 10


def test_creating_participants_is_limited_per_client_address(crowd_on):
    crowd_on.MORALE_CROWD_NEW_PER_ADDRESS = "3/h"
    for i in range(3):
        assert enter(Client(), address="203.0.113.5", PROLIFIC_PID=f"pid{i}").status_code == 302
    refused = enter(Client(), address="203.0.113.5", PROLIFIC_PID="pid3")
    assert refused.status_code == 429 and 3590 <= int(refused["Retry-After"]) <= 3600
    assert b"try again in 60 minutes" in refused.content
    assert Annotator.objects.count() == 3  # nothing written for the refused one
    # Other addresses are not affected, nor are participants coming back from this one.
    assert enter(Client(), address="198.51.100.7", PROLIFIC_PID="pid3").status_code == 302
    assert enter(Client(), address="203.0.113.5", PROLIFIC_PID="pid0").status_code == 302
    # Once the window has passed, the address may bring new participants again.
    Annotator.objects.update(created_at=timezone.now() - timedelta(hours=1, seconds=1))
    assert enter(Client(), address="203.0.113.5", PROLIFIC_PID="pid4").status_code == 302


def test_ipv6_addresses_count_per_64_network(crowd_on):
    crowd_on.MORALE_CROWD_NEW_PER_ADDRESS = "1/h"
    assert enter(Client(), address="2001:db8:1:2::1", PROLIFIC_PID="pid1").status_code == 302
    assert enter(Client(), address="2001:db8:1:2:ffff::9", PROLIFIC_PID="pid2").status_code == 429
    assert enter(Client(), address="2001:db8:1:3::1", PROLIFIC_PID="pid3").status_code == 302


def test_creating_participants_is_limited_per_study(crowd_on):
    crowd_on.MORALE_CROWD_NEW_PER_STUDY = "4/10m"
    for i in range(4):
        assert enter(Client(), address=f"198.51.100.{i}", PROLIFIC_PID=f"pid{i}").status_code == 302
    refused = enter(Client(), address="198.51.100.99", workerId="A9", assignmentId="3XYZ")
    assert refused.status_code == 429 and b"joining the study right now" in refused.content
    assert 590 <= int(refused["Retry-After"]) <= 600
    AnnotatorFactory()  # local accounts are not crowd entries: they neither count nor are limited
    assert Annotator.objects.exclude(platform="local").count() == 4


def test_behind_a_proxy_only_the_configured_header_names_the_client(crowd_on):
    crowd_on.MORALE_CROWD_NEW_PER_ADDRESS = "1/h"
    forged = {"HTTP_X_FORWARDED_FOR": "203.0.113.1"}
    assert enter(Client(), address="10.0.0.1", headers=forged, PROLIFIC_PID="pid1").status_code == 302
    # Not configured: the header is the client's to forge, so it is not read.
    forged = {"HTTP_X_FORWARDED_FOR": "203.0.113.2"}
    assert enter(Client(), address="10.0.0.1", headers=forged, PROLIFIC_PID="pid2").status_code == 429

    crowd_on.MORALE_CLIENT_IP_HEADER = "X-Forwarded-For"
    # The proxy appends the address it saw; what the client wrote further left is ignored.
    via_proxy = {"HTTP_X_FORWARDED_FOR": "1.1.1.1, 203.0.113.7"}
    assert enter(Client(), address="10.0.0.1", headers=via_proxy, PROLIFIC_PID="pid3").status_code == 302
    spoofed = {"HTTP_X_FORWARDED_FOR": "9.9.9.9, 203.0.113.7"}
    assert enter(Client(), address="10.0.0.1", headers=spoofed, PROLIFIC_PID="pid4").status_code == 429
    other = {"HTTP_X_FORWARDED_FOR": "203.0.113.8"}
    assert enter(Client(), address="10.0.0.1", headers=other, PROLIFIC_PID="pid5").status_code == 302


@pytest.mark.parametrize(
    "text, expected",
    [("10/h", crowd.Rate(10, 3600)), ("100/10m", crowd.Rate(100, 600)), ("5 / day", crowd.Rate(5, 86400)),
     ("3/30s", crowd.Rate(3, 30)), ("20/minutes", crowd.Rate(20, 60)), ("", None), ("0/h", None)],
)
def test_rate_settings_are_parsed(text, expected):
    assert crowd.parse_rate(text, setting="X") == expected


@pytest.mark.parametrize("text", ["ten/h", "10", "10/week", "-1/h"])
def test_a_malformed_rate_setting_names_itself(crowd_on, text):
    crowd_on.MORALE_CROWD_NEW_PER_ADDRESS = text
    with pytest.raises(ImproperlyConfigured, match="MORALE_CROWD_NEW_PER_ADDRESS"):
        services.crowd_annotator(platform="prolific", participant_id=PROLIFIC_PID)
    assert not Annotator.objects.exists()


# --- first pages: a short hold, and a cap on newcomers holding one ----------------------------
def crowd_participant(pid, settings):
    return consented(services.crowd_annotator(platform="prolific", participant_id=pid), settings)


def submit_page(annotator, now=None):
    page = services.assignment_get_or_create(annotator=annotator, now=now)
    services.assignment_submit_ratings(
        annotator=annotator,
        assignment_id=page.pk,
        ratings=[services.RatingInput(i.scenario_id, 3, "text") for i in page.items.all()],
        page_token=uuid.uuid4(),
        now=now,
    )
    services.assignment_complete(annotator=annotator, assignment_id=page.pk, now=now)
    return page


def test_a_first_page_frees_its_slots_after_the_short_ttl(crowd_on):
    crowd_on.MORALE_JUDGMENTS_PER_SCENARIO = 1
    make_scenarios(make_context(), 3)
    now = timezone.now()
    page = services.assignment_get_or_create(annotator=crowd_participant("pid1", crowd_on), now=now)
    assert page.is_first_page and page.expires_at == now + timedelta(minutes=5)
    other = consented(AnnotatorFactory(), crowd_on)
    assert services.assignment_get_or_create(annotator=other, now=now + timedelta(minutes=4)) is None
    later = services.assignment_get_or_create(annotator=other, now=now + timedelta(minutes=5, seconds=1))
    assert later is not None and later.context_id == page.context_id


def test_after_a_submitted_page_and_for_local_accounts_pages_hold_for_the_full_ttl(crowd_on):
    for _ in range(3):
        make_scenarios(make_context(), 2)
    participant = crowd_participant("pid1", crowd_on)
    assert submit_page(participant).is_first_page
    now = timezone.now()
    second = services.assignment_get_or_create(annotator=participant, now=now)
    assert not second.is_first_page and second.expires_at == now + timedelta(minutes=30)
    local = services.assignment_get_or_create(annotator=consented(AnnotatorFactory(), crowd_on), now=now)
    assert not local.is_first_page and local.expires_at == now + timedelta(minutes=30)


def test_untouched_participants_cannot_hold_every_slot(client, crowd_on):
    """The issue's probe: newcomers who each opened one page held every slot for 30 minutes."""
    crowd_on.MORALE_MAX_UNTOUCHED_PARTICIPANTS = 2
    for _ in range(5):
        make_scenarios(make_context(), 2)
    veteran = crowd_participant("veteran", crowd_on)
    submit_page(veteran)
    for i in range(2):
        assert services.assignment_get_or_create(annotator=crowd_participant(f"idle{i}", crowd_on)) is not None
    newcomer = crowd_participant("newcomer", crowd_on)
    with pytest.raises(services.StudyFull):
        services.assignment_get_or_create(annotator=newcomer)
    client.force_login(newcomer.user)
    response = client.get(reverse("annotation:next"))
    assert response.status_code == 503 and response["Retry-After"] == "60"
    assert not Assignment.objects.filter(annotator=newcomer).exists()
    # Who has submitted a page, and local accounts, are not newcomers: they still get work.
    assert services.assignment_get_or_create(annotator=veteran) is not None
    assert services.assignment_get_or_create(annotator=consented(AnnotatorFactory(), crowd_on)) is not None
    # The idle first pages lapse after the short TTL, and the newcomer gets in.
    later = timezone.now() + timedelta(minutes=5, seconds=1)
    assert services.assignment_get_or_create(annotator=newcomer, now=later) is not None


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


def test_no_completion_code_for_no_work(client, crowd_on):
    """The issue's probe: /finish/ right after consent showed "You rated 0 scenarios" and the code."""
    crowd_on.MORALE_COMPLETION_CODE = "C1A2B3"
    make_scenarios(make_context(), 2)
    make_scenarios(make_context(), 2)
    annotator = consented_crowd_annotator(client, crowd_on)
    page = client.get(reverse("annotation:finish")).content.decode()
    assert "You rated 0 scenarios" in page
    assert "C1A2B3" not in page and "prolific.com" not in page
    assert "appears here once you have finished 1 page" in page
    submit_page(annotator)
    page = client.get(reverse("annotation:finish")).content.decode()
    assert "C1A2B3" in page and "https://app.prolific.com/submissions/complete?cc=C1A2B3" in page


def test_the_per_annotator_code_waits_for_the_rule_too(client, crowd_on):
    crowd_on.MORALE_COMPLETION_MIN_PAGES = 2
    for _ in range(3):
        make_scenarios(make_context(), 2)
    annotator = consented_crowd_annotator(client, crowd_on)
    code = crowd.completion_code_for(annotator)
    submit_page(annotator)
    page = client.get(reverse("annotation:finish")).content.decode()
    assert code not in page and "finished 2 pages (you have finished 1)" in page
    submit_page(annotator)
    assert code in client.get(reverse("annotation:finish")).content.decode()


def test_with_nothing_left_to_rate_the_code_appears_before_the_page_count(client, crowd_on):
    crowd_on.MORALE_COMPLETION_MIN_PAGES = 5
    make_scenarios(make_context(), 2)
    annotator = consented_crowd_annotator(client, crowd_on)
    code = crowd.completion_code_for(annotator)
    page = services.assignment_get_or_create(annotator=annotator)
    services.assignment_submit_ratings(
        annotator=annotator,
        assignment_id=page.pk,
        ratings=[services.RatingInput(i.scenario_id, 3, "text") for i in page.items.all()],
        page_token=uuid.uuid4(),
    )
    # Rated, but its follow-up step (a check, the add prompt) is still open: not done yet.
    assert code not in client.get(reverse("annotation:finish")).content.decode()
    services.assignment_complete(annotator=annotator, assignment_id=page.pk)
    assert code in client.get(reverse("annotation:finish")).content.decode()


def test_a_completion_rule_of_zero_pages_shows_the_code_at_once(client, crowd_on):
    crowd_on.MORALE_COMPLETION_MIN_PAGES = 0
    make_scenarios(make_context(), 2)
    annotator = consented_crowd_annotator(client, crowd_on)
    assert crowd.completion_code_for(annotator) in client.get(reverse("annotation:finish")).content.decode()


# --- cap on concurrent sessions -------------------------------------------------------------
def consented(annotator, settings):
    """Ready to rate: consented, instructions read, practice done."""
    services.annotator_record_consent(annotator=annotator, version=settings.MORALE_CONSENT_VERSION)
    return mark_onboarded(annotator)


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

"""The annotator pages over HTTP: consent, rating, checks, add scenario, bad input."""

import re
import uuid
from unittest import mock

import pytest
from django.urls import reverse

from annotation import forms, services
from annotation.models import Annotator, Assignment, Context, Judgment, Scenario
from modelloop.models import ModelVersion
from tests.factories import AnnotatorFactory, make_context, make_scenarios, predict

pytestmark = pytest.mark.django_db


@pytest.fixture
def annotator():
    return AnnotatorFactory()


@pytest.fixture
def client_for(client):
    def login(annotator):
        client.force_login(annotator.user)
        return client

    return login


def open_page(client):
    response = client.get(reverse("annotation:next"))
    assert response.status_code == 302, response.content[:500]
    return response.url


def form_for(page_html: str, score=3, modality="text", skip=()):
    ids = sorted(set(re.findall(r'name="score-(\d+)"', page_html)))
    data = {
        "page_token": re.search(r'name="page_token" value="([^"]+)"', page_html).group(1),
    }
    for sid in ids:
        if sid in skip:
            continue
        data[f"score-{sid}"] = str(score)
        data[f"modality-{sid}"] = modality
    return ids, data


def hidden(page_html: str, name: str) -> str:
    return re.search(rf'name="{name}" value="([^"]*)"', page_html).group(1)


def check_page(client, url) -> tuple[str, dict]:
    """The grounding-check page and the hidden fields its form sends (token, the signed checks)."""
    page = client.get(url).content.decode()
    return page, {name: hidden(page, name) for name in ("page_token", "check_items")}


def test_new_user_must_accept_the_content_warning_first(client):
    user = AnnotatorFactory(consent_version="", consented_at=None).user
    client.force_login(user)
    response = client.get(reverse("annotation:next"))
    assert response.url == reverse("annotation:consent")
    page = client.get(response.url).content.decode()
    assert "sensitive" in page and "voluntary" in page and "stop at any time" in page
    refused = client.post(reverse("annotation:consent"), {})
    assert refused.status_code == 400
    accepted = client.post(reverse("annotation:consent"), {"agree": "yes"})
    assert accepted.url == reverse("annotation:next")
    annotator = Annotator.objects.get(user=user)
    assert annotator.consent_version and annotator.consented_at


def test_logged_out_visitors_are_sent_to_login(client):
    response = client.get(reverse("annotation:next"))
    assert response.status_code == 302 and "/accounts/login/" in response.url


def test_rating_page_shows_image_scenarios_scale_and_modality_help(client_for, annotator):
    context = make_context("a child crossing a busy street")
    make_scenarios(context, 4)
    client = client_for(annotator)
    page = client.get(open_page(client)).content.decode()
    assert context.image.url in page and "a child crossing a busy street" in page
    assert page.count('name="score-') == 4 * 5 and page.count('name="modality-') == 4 * 3
    assert "Very unacceptable" in page and "Very acceptable" in page
    assert "What helped you make this decision?" in page
    assert "mainly based on visual cues" in page
    assert "Images left for you" in page


def test_full_flow_disagreement_goes_to_grounding_check(client_for, annotator):
    context = make_context()
    scenarios = make_scenarios(context, 3)
    predict(scenarios[0], 1.0)
    predict(scenarios[1], 4.0)
    predict(scenarios[2], 4.4)
    client = client_for(annotator)
    rate_url = open_page(client)
    _, data = form_for(client.get(rate_url).content.decode(), score=4, modality="both")
    review = client.post(rate_url, data)  # straight to the step after rating
    assert review.url.endswith("/check/")
    assert client.get(review.url.replace("/check/", "/review/")).url == review.url  # as the review page says
    check = client.get(review.url).content.decode()
    assert "Was your judgment primarily influenced by the visual content, the text, or both?" in check
    assert scenarios[0].text in check and scenarios[1].text not in check
    assert re.search(r'class="model">1\.0<', check)
    initial = Judgment.objects.get(scenario=scenarios[0], annotator=annotator)
    _, fields = check_page(client, review.url)
    done = client.post(
        review.url,
        {**fields, f"modality-{initial.pk}": "image", f"decision-{initial.pk}": "revise", f"score-{initial.pk}": "2"},
    )
    assert done.status_code == 302
    reconfirmed = Judgment.objects.get(revises=initial)
    assert reconfirmed.score == 2 and reconfirmed.modality == "image" and reconfirmed.phase == "reconfirmed"
    # all_agree policy: a page with a disagreement gets no add-scenario prompt
    assert done.url == reverse("annotation:next")
    assert Assignment.objects.get(annotator=annotator).status == "completed"


def test_full_flow_all_agree_offers_add_scenario(client_for, annotator):
    context = make_context()
    for s in make_scenarios(context, 3):
        predict(s, 3.5)
    client = client_for(annotator)
    rate_url = open_page(client)
    _, data = form_for(client.get(rate_url).content.decode(), score=3)
    review = client.post(rate_url, data)
    assert review.url.endswith("/add/")
    add_page = client.get(review.url).content.decode()
    assert "Write another action that could happen in this image." in add_page
    response = client.post(review.url, {"action": "add", "text": "sharing an umbrella with a stranger"})
    assert response.status_code == 302
    created = Scenario.objects.get(text="sharing an umbrella with a stranger")
    assert created.origin == "annotator" and created.author == annotator and created.prompted_by is not None


def test_add_scenario_can_be_skipped(client_for, annotator):
    for s in make_scenarios(make_context(), 3):
        predict(s, 3.0)
    client = client_for(annotator)
    rate_url = open_page(client)
    _, data = form_for(client.get(rate_url).content.decode(), score=3)
    add_url = client.post(rate_url, data).url  # the submit redirects straight to the next step
    before = Scenario.objects.count()
    client.post(add_url, {"action": "skip"})
    assert Scenario.objects.count() == before
    assert Assignment.objects.get(annotator=annotator).status == "completed"


def test_any_agree_policy_offers_add_after_checks(client_for, annotator, settings):
    settings.MORALE_ADD_SCENARIO_WHEN = "any_agree"
    scenarios = make_scenarios(make_context(), 3)
    predict(scenarios[0], 1.0)
    predict(scenarios[1], 3.0)
    predict(scenarios[2], 3.0)
    client = client_for(annotator)
    rate_url = open_page(client)
    _, data = form_for(client.get(rate_url).content.decode(), score=3)
    check_url = client.post(rate_url, data).url  # the submit redirects straight to the next step
    initial = Judgment.objects.get(scenario=scenarios[0], annotator=annotator)
    _, fields = check_page(client, check_url)
    done = client.post(check_url, {**fields, f"modality-{initial.pk}": "text", f"decision-{initial.pk}": "keep"})
    assert done.url.endswith("/add/")
    assert Judgment.objects.get(revises=initial).score == 3


def test_missing_model_score_shows_a_polling_page_not_a_hang(client_for, annotator):
    make_scenarios(make_context(), 3)  # nothing scored yet
    client = client_for(annotator)
    rate_url = open_page(client)
    _, data = form_for(client.get(rate_url).content.decode())
    review = client.get(client.post(rate_url, data).url)
    assert review.status_code == 200
    assert b'http-equiv="refresh"' in review.content
    assert Judgment.objects.filter(annotator=annotator).count() == 3


def test_late_score_is_offered_as_a_check_later_in_the_session(client_for, annotator, settings):
    settings.MORALE_SCORE_WAIT_SECONDS = 0  # the annotator moves on at once
    make_scenarios(make_context(), 3)
    make_scenarios(make_context(), 3)
    client = client_for(annotator)
    rate_url = open_page(client)
    _, data = form_for(client.get(rate_url).content.decode(), score=5)
    review = client.post(rate_url, data)
    assert review.url == reverse("annotation:next")  # no add prompt: nothing agreed yet
    scenarios = [j.scenario for j in Judgment.objects.filter(annotator=annotator)]
    for s in scenarios:
        predict(s, 1.0)  # the worker's scores arrive: every one disagrees
    nxt = client.get(reverse("annotation:next"))
    assert nxt.url == reverse("annotation:late_checks")
    page = client.get(nxt.url).content.decode()
    assert all(s.text in page for s in scenarios)


def test_missing_answers_keep_what_was_typed(client_for, annotator):
    make_scenarios(make_context(), 3)
    client = client_for(annotator)
    rate_url = open_page(client)
    ids, data = form_for(client.get(rate_url).content.decode(), score=2)
    del data[f"modality-{ids[0]}"]
    response = client.post(rate_url, data)
    assert response.status_code == 400
    page = response.content.decode()
    assert "Please say what helped you decide" in page
    assert page.count('value="2" required checked') == 3  # the scores typed are still there
    assert Judgment.objects.count() == 0


@pytest.mark.parametrize("bad", ["0", "6", "2.5", "abc", ""])
def test_bad_scores_over_http_are_refused(client_for, annotator, bad):
    make_scenarios(make_context(), 3)
    client = client_for(annotator)
    rate_url = open_page(client)
    ids, data = form_for(client.get(rate_url).content.decode())
    data[f"score-{ids[1]}"] = bad
    response = client.post(rate_url, data)
    assert response.status_code == 400
    assert Judgment.objects.count() == 0


def test_double_submit_stores_one_judgment_per_scenario(client_for, annotator):
    make_scenarios(make_context(), 3)
    client = client_for(annotator)
    rate_url = open_page(client)
    _, data = form_for(client.get(rate_url).content.decode())
    first = client.post(rate_url, data)
    second = client.post(rate_url, data)
    assert first.status_code == second.status_code == 302
    assert Judgment.objects.count() == 3


def test_expired_page_keeps_the_answers_and_says_so(client_for, annotator):
    make_scenarios(make_context(), 3)
    client = client_for(annotator)
    rate_url = open_page(client)
    _, data = form_for(client.get(rate_url).content.decode(), score=4)
    Assignment.objects.update(expires_at="2000-01-01T00:00:00Z")
    response = client.post(rate_url, data)
    assert response.status_code == 409
    page = response.content.decode()
    assert "This page expired" in page and page.count('value="4" required checked') == 3
    assert 'name="renew" value="1"' in page
    data["renew"] = "1"
    assert client.post(rate_url, data).status_code == 302  # still open: saved on the second press
    assert Judgment.objects.count() == 3


def test_another_annotators_page_is_404_and_shows_nothing(client_for, annotator):
    make_scenarios(make_context(), 3)
    owner = AnnotatorFactory()
    assignment = services.assignment_get_or_create(annotator=owner)
    client = client_for(annotator)
    url = reverse("annotation:rate", args=[assignment.pk])
    assert client.get(url).status_code == 404
    ids = [str(i.scenario_id) for i in assignment.items.all()]
    data = {"page_token": str(uuid.uuid4())} | {f"score-{i}": "3" for i in ids} | {f"modality-{i}": "text" for i in ids}
    assert client.post(url, data).status_code == 404
    for name in ("review", "check", "add"):
        assert client.get(reverse(f"annotation:{name}", args=[assignment.pk])).status_code == 404
    assert Judgment.objects.count() == 0


def test_another_annotators_judgment_cannot_be_reconfirmed(client_for, annotator):
    scenarios = make_scenarios(make_context(), 3)
    owner = AnnotatorFactory()
    a = services.assignment_get_or_create(annotator=owner)
    services.assignment_submit_ratings(
        annotator=owner, assignment_id=a.pk, page_token=uuid.uuid4(),
        ratings=[services.RatingInput(i.scenario_id, 5, "text") for i in a.items.all()],
    )
    for s in scenarios:
        predict(s, 1.0)
    victim = Judgment.objects.filter(annotator=owner).first()
    client = client_for(annotator)
    response = client.post(
        reverse("annotation:check", args=[a.pk]),
        {"page_token": str(uuid.uuid4()), f"modality-{victim.pk}": "text", f"decision-{victim.pk}": "revise", f"score-{victim.pk}": "1"},
    )
    assert response.status_code == 404
    assert not Judgment.objects.filter(phase="reconfirmed").exists()


def test_scenario_html_is_escaped_never_executed(client_for, annotator):
    context = make_context()
    services.scenario_create(context=context, text='<script>alert("x")</script><b>bold</b>')
    make_scenarios(context, 2)
    client = client_for(annotator)
    page = client.get(open_page(client)).content.decode()
    assert "<script>alert" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in page


@pytest.mark.parametrize("text,message", [("", "empty"), ("y" * 10_000, "under 500")])
def test_bad_new_scenario_text_is_refused_on_the_add_page(client_for, annotator, text, message):
    for s in make_scenarios(make_context(), 3):
        predict(s, 3.0)
    client = client_for(annotator)
    rate_url = open_page(client)
    _, data = form_for(client.get(rate_url).content.decode())
    add_url = client.post(rate_url, data).url  # the submit redirects straight to the next step
    before = Scenario.objects.count()
    response = client.post(add_url, {"action": "add", "text": text})
    assert response.status_code == 400 and message in response.content.decode()
    assert Scenario.objects.count() == before


def test_finish_page_when_nothing_is_left(client_for, annotator):
    client = client_for(annotator)
    response = client.get(reverse("annotation:next"))
    assert response.url == reverse("annotation:finish")
    assert "Thank you" in client.get(response.url).content.decode()


def test_screened_out_annotator_sees_a_clear_page(client_for):
    annotator = AnnotatorFactory(status="screened_out")
    response = client_for(annotator).get(reverse("annotation:next"))
    assert response.status_code == 403 and b"screened out" in response.content


def _check_url_with_one_disagreement(client, annotator, score=5):
    scenarios = make_scenarios(make_context(), 3)
    predict(scenarios[0], 1.0)
    for s in scenarios[1:]:
        predict(s, float(score))
    rate_url = open_page(client)
    _, data = form_for(client.get(rate_url).content.decode(), score=score)
    check_url = client.post(rate_url, data).url  # the submit redirects straight to the next step
    return check_url, Judgment.objects.get(scenario=scenarios[0], annotator=annotator)


def test_keep_with_a_different_score_is_refused_not_silently_dropped(client_for, annotator):
    client = client_for(annotator)
    check_url, initial = _check_url_with_one_disagreement(client, annotator)
    _, fields = check_page(client, check_url)
    response = client.post(check_url, {
        **fields, f"modality-{initial.pk}": "text", f"decision-{initial.pk}": "keep", f"score-{initial.pk}": "2",
    })
    assert response.status_code == 400 and "Revise it to" in response.content.decode()
    assert not Judgment.objects.filter(phase="reconfirmed").exists()


def test_check_without_a_page_token_says_so_for_the_page(client_for, annotator):
    client = client_for(annotator)
    check_url, initial = _check_url_with_one_disagreement(client, annotator)
    response = client.post(check_url, {f"modality-{initial.pk}": "text", f"decision-{initial.pk}": "keep"})
    assert response.status_code == 400 and "reload the page" in response.content.decode()
    assert not Judgment.objects.filter(phase="reconfirmed").exists()


def test_only_context_images_are_served_from_media(client, settings, annotator):
    context = make_context()
    (settings.MEDIA_ROOT / "exports").mkdir(parents=True, exist_ok=True)
    (settings.MEDIA_ROOT / "exports" / "secret.jsonl").write_text("{}")
    client.force_login(annotator.user)
    assert client.get(context.image.url).status_code == 200
    assert client.get("/media/exports/secret.jsonl").status_code == 404


# --- the grounding-check page: what it showed, one transaction -----------------------------
def _rate_page(client, *, score=5, modality="text"):
    """Open a page and send it with every scenario rated ``score`` / ``modality``: the
    submit's redirect, to the step after rating."""
    rate_url = open_page(client)
    _, data = form_for(client.get(rate_url).content.decode(), score=score, modality=modality)
    return client.post(rate_url, data)


def test_check_page_prefills_the_first_modality_advertises_its_keys_and_shows_progress(client_for, annotator):
    client = client_for(annotator)
    check_url, initial = _check_url_with_one_disagreement(client, annotator)
    page, _ = check_page(client, check_url)
    assert re.search(rf'name="modality-{initial.pk}" value="text" required aria-describedby="help-text" checked', page)
    assert not re.search(rf'name="decision-{initial.pk}" value="\w+"[^>]* checked', page)  # that one is theirs to say
    assert "<kbd>k</kbd> keep your score" in page
    assert "Done: 0 of 10 pages (0%)" in page


def test_a_score_that_arrives_between_showing_and_sending_the_check_is_checked_on_the_next_page(client_for, annotator):
    scenarios = make_scenarios(make_context(), 3)
    predict(scenarios[0], 1.0)  # disagrees with a 5
    predict(scenarios[1], 5.0)  # scenarios[2]: no score yet
    client = client_for(annotator)
    check_url = _rate_page(client).url
    assert check_url.endswith("/check/")
    page, fields = check_page(client, check_url)
    assert scenarios[2].text not in page
    predict(scenarios[2], 1.0)  # the worker's score arrives: a second disagreement
    first = Judgment.objects.get(scenario=scenarios[0], annotator=annotator)
    done = client.post(check_url, {**fields, f"modality-{first.pk}": "text", f"decision-{first.pk}": "keep"})
    assert done.status_code == 302  # not "Some answers are missing": the form answered what it showed
    assert Judgment.objects.get(revises=first).score == 5
    assert done.url == check_url  # straight to the new check
    again = client.get(done.url).content.decode()
    assert scenarios[2].text in again and scenarios[0].text not in again


def test_late_checks_answer_what_their_page_showed_even_when_more_arrive(client_for, annotator, settings):
    settings.MORALE_SCORE_WAIT_SECONDS = 0
    make_scenarios(make_context(), 3)
    make_scenarios(make_context(), 3)
    client = client_for(annotator)
    _rate_page(client)  # no scores yet: the annotator moves on
    judged = list(Judgment.objects.filter(annotator=annotator))
    predict(judged[0].scenario, 1.0)
    page, fields = check_page(client, reverse("annotation:late_checks"))
    assert judged[0].scenario.text in page and judged[1].scenario.text not in page
    predict(judged[1].scenario, 1.0)  # arrives while the page is open
    done = client.post(
        reverse("annotation:late_checks"),
        {**fields, f"modality-{judged[0].pk}": "image", f"decision-{judged[0].pk}": "revise", f"score-{judged[0].pk}": "3"},
    )
    assert done.status_code == 302
    reconfirmed = Judgment.objects.get(revises=judged[0])
    assert (reconfirmed.score, reconfirmed.model_score) == (3, 1.0)
    assert client.get(reverse("annotation:next")).url == reverse("annotation:late_checks")  # the other one, next


def test_a_late_check_records_the_model_score_its_page_showed(client_for, annotator, settings):
    settings.MORALE_SCORE_WAIT_SECONDS = 0
    make_scenarios(make_context(), 3)
    client = client_for(annotator)
    _rate_page(client)
    judged = Judgment.objects.filter(annotator=annotator).first()
    predict(judged.scenario, 1.0)
    _, fields = check_page(client, reverse("annotation:late_checks"))
    # A new model becomes current before the answer is sent and scores the pair differently.
    ModelVersion.objects.update(is_current=False)
    newer = ModelVersion.objects.create(name="newer", scorer="zero-shot-text-baseline", is_current=True)
    predict(judged.scenario, 4.5, newer)
    client.post(reverse("annotation:late_checks"), {**fields, f"modality-{judged.pk}": "text", f"decision-{judged.pk}": "keep"})
    reconfirmed = Judgment.objects.get(revises=judged)
    assert reconfirmed.model_score == 1.0 and reconfirmed.model_version != newer and reconfirmed.delta == 4.0


def test_a_failure_half_way_through_a_check_page_stores_none_of_its_answers(client_for, annotator):
    scenarios = make_scenarios(make_context(), 3)
    for s in scenarios:
        predict(s, 1.0)  # all three disagree with a 5
    client = client_for(annotator)
    check_url = _rate_page(client).url
    _, fields = check_page(client, check_url)
    for j in Judgment.objects.filter(annotator=annotator):
        fields |= {f"modality-{j.pk}": "text", f"decision-{j.pk}": "keep"}
    real_full_clean, calls = Judgment.full_clean, []

    def fail_on_the_second(self, *args, **kwargs):
        calls.append(self)
        if len(calls) == 2:
            raise RuntimeError("the database went away half way")
        return real_full_clean(self, *args, **kwargs)

    with mock.patch.object(Judgment, "full_clean", fail_on_the_second), pytest.raises(RuntimeError):
        client.post(check_url, fields)
    assert not Judgment.objects.filter(phase="reconfirmed").exists()
    assert client.post(check_url, fields).status_code == 302  # sent again: all three, once
    assert Judgment.objects.filter(phase="reconfirmed").count() == 3


@pytest.mark.parametrize("damage", ["missing", "tampered", "another page"])
def test_a_check_form_whose_list_of_checks_is_missing_or_forged_is_refused(client_for, annotator, damage):
    client = client_for(annotator)
    check_url, initial = _check_url_with_one_disagreement(client, annotator)
    _, fields = check_page(client, check_url)
    if damage == "missing":
        del fields["check_items"]
    elif damage == "tampered":
        fields["check_items"] = fields["check_items"].replace(str(initial.pk), str(initial.pk + 1), 1) + "x"
    else:  # the late-checks page's list sent to this page
        fields["check_items"] = forms.check_items_signed([], annotator=annotator, assignment_id=None)
    response = client.post(check_url, {**fields, f"modality-{initial.pk}": "text", f"decision-{initial.pk}": "keep"})
    assert response.status_code == 400 and "reload the page" in response.content.decode()
    assert not Judgment.objects.filter(phase="reconfirmed").exists()


def test_another_annotators_signed_checks_are_refused(client_for, annotator):
    client = client_for(annotator)
    check_url, initial = _check_url_with_one_disagreement(client, annotator)
    _, fields = check_page(client, check_url)
    other = AnnotatorFactory()
    fields["check_items"] = forms.check_items_signed([], annotator=other, assignment_id=initial.assignment_id)
    response = client.post(check_url, {**fields, f"modality-{initial.pk}": "text", f"decision-{initial.pk}": "keep"})
    assert response.status_code == 400
    assert not Judgment.objects.filter(phase="reconfirmed").exists()


def test_a_check_page_sent_twice_stores_each_answer_once(client_for, annotator):
    client = client_for(annotator)
    check_url, initial = _check_url_with_one_disagreement(client, annotator)
    _, fields = check_page(client, check_url)
    answer = {**fields, f"modality-{initial.pk}": "both", f"decision-{initial.pk}": "revise", f"score-{initial.pk}": "3"}
    assert client.post(check_url, answer).status_code == 302
    assert client.post(check_url, {**answer, f"score-{initial.pk}": "1"}).status_code == 302
    assert list(Judgment.objects.filter(phase="reconfirmed").values_list("score", flat=True)) == [3]


def test_every_missing_check_answer_is_named_beside_its_control(client_for, annotator):
    client = client_for(annotator)
    check_url, initial = _check_url_with_one_disagreement(client, annotator)
    _, fields = check_page(client, check_url)
    response = client.post(check_url, fields)  # nothing chosen, the modality unticked by hand
    assert response.status_code == 400
    page = response.content.decode()
    for field in ("modality", "decision"):
        assert re.search(rf'<p class="error field-error" id="c{initial.pk}-{field}-error">[^<]+</p>\s*<div role="radiogroup"', page)
    assert "Please complete 2 answers: Scenario 1 (what helped you decide, keep or revise)." in page
    assert not Judgment.objects.filter(phase="reconfirmed").exists()


# --- every missing answer, beside its control; progress on every page ------------------------
def test_every_missing_rating_answer_is_named_beside_its_control(client_for, annotator):
    make_scenarios(make_context(), 3)
    client = client_for(annotator)
    rate_url = open_page(client)
    ids, data = form_for(client.get(rate_url).content.decode(), score=2)
    del data[f"modality-{ids[0]}"]
    del data[f"score-{ids[1]}"], data[f"modality-{ids[1]}"]
    page = client.post(rate_url, data).content.decode()
    shown = {sid: re.search(rf'data-scenario="{sid}" data-label="(Scenario \d)"', page).group(1) for sid in ids}
    expected = {(ids[0], "modality"), (ids[1], "score"), (ids[1], "modality")}
    found = set()
    for sid, field in re.findall(r'<p class="error field-error" id="s(\d+)-(score|modality)-error">[^<]+</p>\s*<div role="radiogroup"', page):
        found.add((sid, field))
    assert found == expected
    order = sorted([(shown[ids[0]], "what helped you decide"), (shown[ids[1]], "score, what helped you decide")])
    assert f"Please complete 3 answers: {order[0][0]} ({order[0][1]}), {order[1][0]} ({order[1][1]})." in page


def test_progress_is_shown_on_the_rating_waiting_check_and_add_pages(client_for, annotator):
    client = client_for(annotator)
    scored, unscored, later = make_context(), make_context(), make_context()
    for s in make_scenarios(scored, 3):
        predict(s, 3.0)
    make_scenarios(unscored, 3)  # its page waits for the model
    make_scenarios(later, 3)  # still to do: the estimate counts it
    Context.objects.filter(pk=unscored.pk).update(judgment_count=1)  # least-judged first
    Context.objects.filter(pk=later.pk).update(judgment_count=2)
    rate_url = open_page(client)
    assert "Done: 0 of 10 pages (0%)" in client.get(rate_url).content.decode()
    _, data = form_for(client.get(rate_url).content.decode(), score=3)
    add_url = client.post(rate_url, data).url  # the submit redirects straight to the next step
    assert add_url.endswith("/add/") and "Done: 0 of 10 pages" in client.get(add_url).content.decode()
    client.post(add_url, {"action": "skip"})
    rate_url = open_page(client)
    _, data = form_for(client.get(rate_url).content.decode(), score=3)
    waiting = client.get(client.post(rate_url, data).url).content.decode()
    assert "The model is still scoring" in waiting and "Done: 1 of 10 pages (10%)" in waiting
    assert "about 1 min left at your pace · Images left for you: 1" in waiting

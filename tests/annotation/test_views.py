"""The annotator pages over HTTP: consent, rating, checks, add scenario, bad input."""

import re
import uuid

import pytest
from django.urls import reverse

from annotation import services
from annotation.models import Annotator, Assignment, Judgment, Scenario
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
        "rendered_at": re.search(r'name="rendered_at" value="([^"]+)"', page_html).group(1),
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
    return page, {name: hidden(page, name) for name in ("page_token", "rendered_at", "check_items")}


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
    response = client.post(rate_url, data)
    review = client.get(response.url)
    assert review.url.endswith("/check/")
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
    after = client.get(done.url)
    assert after.url == reverse("annotation:next")
    assert Assignment.objects.get(annotator=annotator).status == "completed"


def test_full_flow_all_agree_offers_add_scenario(client_for, annotator):
    context = make_context()
    for s in make_scenarios(context, 3):
        predict(s, 3.5)
    client = client_for(annotator)
    rate_url = open_page(client)
    _, data = form_for(client.get(rate_url).content.decode(), score=3)
    review = client.get(client.post(rate_url, data).url)
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
    add_url = client.get(client.post(rate_url, data).url).url
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
    check_url = client.get(client.post(rate_url, data).url).url
    initial = Judgment.objects.get(scenario=scenarios[0], annotator=annotator)
    _, fields = check_page(client, check_url)
    done = client.post(check_url, {**fields, f"modality-{initial.pk}": "text", f"decision-{initial.pk}": "keep"})
    assert client.get(done.url).url.endswith("/add/")
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
    review = client.get(client.post(rate_url, data).url)
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
    add_url = client.get(client.post(rate_url, data).url).url
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
    check_url = client.get(client.post(rate_url, data).url).url
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

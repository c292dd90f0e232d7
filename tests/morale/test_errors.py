"""Failure pages (morale/errors.py): a database outage is a 503 that retries itself and
keeps the annotator's form; any other error is the site's 500 page; no traceback ever."""

import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from django.db import OperationalError
from django.test import Client
from django.urls import reverse

from annotation.models import Judgment
from tests.factories import AnnotatorFactory, make_context, make_scenarios

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
OUTAGE = OperationalError("server closed the connection unexpectedly\n\tThis probably means the server terminated")


@pytest.fixture
def annotator_client():
    client = Client(raise_request_exception=False)
    client.force_login(AnnotatorFactory().user)
    return client


def rating_page(client):
    context = make_context()
    make_scenarios(context, 3)
    response = client.get(reverse("annotation:next"))
    return response.url


def test_a_page_during_a_database_outage_is_a_503_that_retries_itself(annotator_client):
    url = rating_page(annotator_client)
    with mock.patch("annotation.selectors.annotator_progress", side_effect=OUTAGE):
        response = annotator_client.get(url)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    page = response.content.decode()
    assert "The database is restarting" in page
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "Traceback" not in page and "server closed" not in page


def page_form(client, url) -> dict:
    page = client.get(url).content.decode()
    form = {"page_token": re.search(r'name="page_token" value="([^"]+)"', page).group(1)}
    for sid in set(re.findall(r'name="score-(\d+)"', page)):
        form[f"score-{sid}"], form[f"modality-{sid}"] = "4", "both"
    return form


def test_a_form_sent_during_an_outage_comes_back_ready_to_send_again_without_passwords(annotator_client):
    url = rating_page(annotator_client)
    form = {**page_form(annotator_client, url), "password": "hunter2", "new_password1": "x"}
    with mock.patch("annotation.services.assignment_submit_ratings", side_effect=OUTAGE):
        response = annotator_client.post(url, form)
    assert response.status_code == 503
    page = response.content.decode()
    assert f'action="{url}"' in page and 'id="resend-form"' in page
    for name, value in form.items():
        if "password" not in name:
            assert f'<input type="hidden" name="{name}" value="{value}">' in page
    assert "hunter2" not in page and "new_password1" not in page
    assert "resend.js" in page  # sends it again by itself; the button works without JavaScript


def test_resending_the_kept_form_after_the_outage_stores_the_page_once(annotator_client):
    url = rating_page(annotator_client)
    form = page_form(annotator_client, url)
    with mock.patch("annotation.services.assignment_submit_ratings", side_effect=OUTAGE):
        kept = annotator_client.post(url, form).content.decode()
    resent = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', kept))
    assert resent == form
    assert annotator_client.post(url, resent).status_code == 302
    annotator_client.post(url, resent)  # the page sent once more: stored once
    assert Judgment.objects.count() == len(form) // 2


def test_any_other_error_is_the_sites_500_page_without_a_traceback(annotator_client):
    url = rating_page(annotator_client)
    with mock.patch("annotation.selectors.annotator_progress", side_effect=ZeroDivisionError("boom")):
        response = annotator_client.get(url)
    assert response.status_code == 500
    page = response.content.decode()
    assert "Something went wrong on our side" in page and 'class="card narrow"' in page
    assert "Traceback" not in page and "boom" not in page and "ZeroDivisionError" not in page


def test_an_operational_error_that_is_not_an_outage_is_a_500(annotator_client):
    url = rating_page(annotator_client)
    with mock.patch("annotation.selectors.annotator_progress", side_effect=OperationalError("no such table: x")):
        assert annotator_client.get(url).status_code == 500


def test_the_api_answers_json_during_an_outage():
    from rest_framework.authtoken.models import Token

    user = AnnotatorFactory().user
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    with mock.patch("annotation.api.JudgmentViewSet.get_queryset", side_effect=OUTAGE):
        response = client.get("/api/v1/judgments/")
    assert response.status_code == 503
    assert response.json() == {"detail": "The database is restarting; retry in a few seconds."}
    assert response["Retry-After"] == "5"


def test_debug_is_off_unless_asked_for(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DATABASE_URL")}
    env.update(DJANGO_SETTINGS_MODULE="morale.settings.local", MORALE_VAR_DIR=str(tmp_path))
    code = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"
    off = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    on = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "DEBUG": "true"},
                        capture_output=True, text=True, timeout=60)
    assert (off.stdout.strip(), on.stdout.strip()) == ("False", "True"), off.stderr + on.stderr

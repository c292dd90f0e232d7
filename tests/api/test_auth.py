"""Authentication: API tokens (rest_framework.authtoken) and the browser session, whose
unsafe requests must carry a CSRF token."""

import pytest
from django.middleware.csrf import _get_new_csrf_string
from django.test import RequestFactory
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import DatasetExport

from .conftest import PASSWORD, ids, token_client

pytestmark = pytest.mark.django_db


def session_client(user, *, csrf: bool) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    # django-axes checks every password log-in against its lockouts, so it needs the request.
    assert client.login(request=RequestFactory().get("/"), username=user.username, password=PASSWORD)
    if csrf:
        secret = _get_new_csrf_string()
        client.cookies["csrftoken"] = secret
        client.credentials(HTTP_X_CSRFTOKEN=secret)
    return client


def test_a_token_authenticates_its_user(world):
    assert ids(token_client(world.alice.user).get("/api/v1/judgments/")) == [j.pk for j in world.alice_judgments]


@pytest.mark.parametrize("header", ["Token not-a-real-token", "Token ", "Bearer abc", "Token a b"])
def test_a_wrong_or_malformed_token_is_401(world, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/v1/judgments/").status_code == 401


def test_the_token_of_a_deactivated_user_no_longer_works(world):
    client = token_client(world.researcher)
    world.researcher.is_active = False
    world.researcher.save()
    assert client.get("/api/v1/exports/").status_code == 401


def test_a_deleted_token_no_longer_works(world):
    client = token_client(world.alice.user)
    Token.objects.filter(user=world.alice.user).delete()
    assert client.get("/api/v1/judgments/").status_code == 401


def test_the_browser_session_authenticates_reads(world):
    client = session_client(world.bob.user, csrf=False)
    assert ids(client.get("/api/v1/judgments/")) == [j.pk for j in world.bob_judgments]


def test_a_session_post_without_a_csrf_token_is_refused(world):
    client = session_client(world.researcher, csrf=False)
    before = DatasetExport.objects.count()
    response = client.post("/api/v1/exports/", {"format": "jsonl"}, format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert DatasetExport.objects.count() == before


def test_a_session_post_with_the_csrf_token_goes_through(world):
    client = session_client(world.researcher, csrf=True)
    response = client.post("/api/v1/exports/", {"format": "jsonl"}, format="json")
    assert response.status_code in (201, 202), response.content
    assert DatasetExport.objects.filter(pk=response.json()["id"], created_by=world.researcher).exists()


def test_a_token_request_needs_no_csrf_token(world):
    client = token_client(world.researcher)
    client.handler.enforce_csrf_checks = True
    assert client.post("/api/v1/exports/", {"format": "csv"}, format="json").status_code in (201, 202)


def test_a_forged_session_cookie_is_anonymous(world):
    client = APIClient()
    client.cookies["sessionid"] = "forged-session-key"
    assert client.get("/api/v1/judgments/").status_code == 401


def test_the_browsable_api_renders_for_a_logged_in_user(world):
    client = session_client(world.researcher, csrf=False)
    page = client.get("/api/v1/judgments/", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    assert client.get("/api/v1/", HTTP_ACCEPT="text/html").status_code == 200

"""Log-in throttling (django-axes): the site's log-in and the admin's lock out after
MORALE_LOGIN_FAILURE_LIMIT failures of one account from one address, say so clearly, and
let the account in again after the cool-off."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse
from django.utils import timezone

from morale.settings.base import axes_lockout_parameters
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests"  # tests.factories.UserFactory's


def log_in(client, username, password, *, address="192.0.2.1", url=None, **headers):
    return client.post(
        url or reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address, **headers
    )


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_the_defaults_lock_one_account_from_one_address_after_five_failures(settings):
    assert settings.AXES_FAILURE_LIMIT == 5 and settings.AXES_COOLOFF_TIME == timedelta(minutes=15)
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert "axes.middleware.AxesMiddleware" == settings.MIDDLEWARE[-1]
    assert settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"


def test_the_lockout_parameters_setting_is_read_as_axes_expects():
    assert axes_lockout_parameters(["username+ip_address", " ip_address ", ""]) == [
        ["username", "ip_address"], "ip_address",
    ]


def test_the_fifth_wrong_password_locks_the_login_with_a_clear_message():
    user = UserFactory()
    client = Client()
    for _ in range(4):
        response = log_in(client, user.username, "wrong")
        assert response.status_code == 200 and b"didn't match" in response.content
    locked = log_in(client, user.username, "wrong")
    assert locked.status_code == 429 and locked["Retry-After"] == "900"
    page = locked.content.decode()
    assert "Too many failed log-in attempts" in page and "paused for 15 minutes" in page
    # Now even the right password is refused, and nobody is signed in.
    right = log_in(client, user.username, PASSWORD)
    assert right.status_code == 429 and not signed_in(client)


def test_the_admin_login_is_throttled_too():
    staff = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    admin_login = reverse("admin:login")
    for _ in range(5):
        response = log_in(client, staff.username, "wrong", url=admin_login)
    assert response.status_code == 429 and b"Log-in paused" in response.content
    assert log_in(client, staff.username, PASSWORD, url=admin_login).status_code == 429
    assert not signed_in(client)
    assert client.get(reverse("admin:index")).status_code == 302  # still sent to log in


def test_a_lockout_holds_one_account_from_one_address_only():
    victim, other = UserFactory(), UserFactory()
    for _ in range(5):
        log_in(Client(), victim.username, "wrong", address="203.0.113.9")
    # The account's owner, elsewhere, is not locked out by the attacker's guesses ...
    elsewhere = Client()
    assert log_in(elsewhere, victim.username, PASSWORD, address="198.51.100.1").status_code == 302
    assert signed_in(elsewhere)
    # ... and another account from the attacker's address is not either.
    assert log_in(Client(), other.username, PASSWORD, address="203.0.113.9").status_code == 302


def test_the_lockout_ends_after_the_cooloff():
    user = UserFactory()
    for _ in range(5):
        log_in(Client(), user.username, "wrong")
    assert log_in(Client(), user.username, PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=15, seconds=1))
    client = Client()
    assert log_in(client, user.username, PASSWORD).status_code == 302 and signed_in(client)


def test_a_successful_login_clears_the_failure_count():
    user = UserFactory()
    for _ in range(4):
        log_in(Client(), user.username, "wrong")
    assert log_in(Client(), user.username, PASSWORD).status_code == 302
    for _ in range(4):
        assert log_in(Client(), user.username, "wrong").status_code == 200
    assert log_in(Client(), user.username, PASSWORD).status_code == 302


def test_behind_a_proxy_the_lockout_follows_the_configured_header(settings):
    settings.MORALE_CLIENT_IP_HEADER = "X-Forwarded-For"
    user = UserFactory()
    for i in range(5):  # a client rewriting the left of the header changes nothing
        log_in(Client(), user.username, "wrong", address="10.0.0.1", HTTP_X_FORWARDED_FOR=f"1.1.1.{i}, 203.0.113.9")
    proxied = {"address": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
    assert log_in(Client(), user.username, PASSWORD, **proxied).status_code == 429
    # Another client behind the same proxy is not locked out.
    other = {"address": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "198.51.100.4"}
    assert log_in(Client(), user.username, PASSWORD, **other).status_code == 302


def queries_of_a_login(password: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        log_in(Client(), "measured", password)
    return len(captured.captured_queries)


def test_throttling_costs_a_log_in_a_few_queries():
    """What axes adds to one log-in POST (the README quotes these figures)."""
    UserFactory(username="measured")
    with override_settings(AXES_ENABLED=False):
        plain_ok, plain_failed = queries_of_a_login(PASSWORD), queries_of_a_login("wrong")
    throttled_ok, throttled_failed = queries_of_a_login(PASSWORD), queries_of_a_login("wrong")
    assert throttled_ok - plain_ok <= 5, (plain_ok, throttled_ok)
    assert throttled_failed - plain_failed <= 9, (plain_failed, throttled_failed)

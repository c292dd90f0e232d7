"""The client address rule (morale.client_ip): REMOTE_ADDR, or the one configured proxy header."""

import pytest
from django.test import RequestFactory

from morale.client_ip import address_group, client_address


def request(remote="10.0.0.1", **headers):
    return RequestFactory().get("/", REMOTE_ADDR=remote, **headers)


def test_without_a_configured_header_every_header_is_ignored(settings):
    settings.MORALE_CLIENT_IP_HEADER = ""
    forged = request(HTTP_X_FORWARDED_FOR="203.0.113.1", HTTP_X_REAL_IP="203.0.113.2", HTTP_CLIENT_IP="203.0.113.3")
    assert client_address(forged) == "10.0.0.1"


@pytest.mark.parametrize(
    "header, meta, value, count, expected",
    [
        ("X-Forwarded-For", "HTTP_X_FORWARDED_FOR", "203.0.113.5", 1, "203.0.113.5"),
        ("X-Forwarded-For", "HTTP_X_FORWARDED_FOR", "6.6.6.6, 203.0.113.5", 1, "203.0.113.5"),
        ("X-Forwarded-For", "HTTP_X_FORWARDED_FOR", "6.6.6.6, 203.0.113.5, 10.1.1.1", 2, "203.0.113.5"),
        ("x-real-ip", "HTTP_X_REAL_IP", " 2001:db8::1 ", 1, "2001:db8::1"),
        ("X-Forwarded-For", "HTTP_X_FORWARDED_FOR", "not-an-address", 1, "10.0.0.1"),
        ("X-Forwarded-For", "HTTP_X_FORWARDED_FOR", "203.0.113.5", 2, "10.0.0.1"),  # fewer entries than proxies
    ],
)
def test_the_configured_header_is_read_from_the_right(settings, header, meta, value, count, expected):
    settings.MORALE_CLIENT_IP_HEADER = header
    settings.MORALE_TRUSTED_PROXY_COUNT = count
    assert client_address(request(**{meta: value})) == expected


def test_a_missing_header_falls_back_to_the_connection(settings):
    settings.MORALE_CLIENT_IP_HEADER = "X-Forwarded-For"
    assert client_address(request()) == "10.0.0.1"
    assert client_address(request(remote="garbage")) is None


@pytest.mark.parametrize(
    "address, group",
    [
        ("203.0.113.5", "203.0.113.5"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.5", "203.0.113.5"),
        (None, ""),
    ],
)
def test_addresses_are_grouped_per_ipv4_address_and_ipv6_64(address, group):
    assert address_group(address) == group

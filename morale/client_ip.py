"""The client's address, the one rule for it: the crowd entry's rate limit and django-axes's
log-in lockout (``AXES_CLIENT_IP_CALLABLE``) both ask here.

Without a proxy the address is ``REMOTE_ADDR``. Behind a proxy every request comes from the
proxy, so the address is read from the header the proxy sets, and only from the header
named in ``MORALE_CLIENT_IP_HEADER``: a header the deployment did not name is the client's
to forge. In a comma-separated header (``X-Forwarded-For``) each proxy appends the address
it saw, so the client is the ``MORALE_TRUSTED_PROXY_COUNT``-th entry from the right;
entries further left were written by the client and are never read.

Imports nothing of the project (a shared piece of ``morale``).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings


def _meta_key(header: str) -> str:
    """"X-Forwarded-For" -> "HTTP_X_FORWARDED_FOR" (how WSGI names request headers)."""
    name = header.strip().upper().replace("-", "_")
    return name if name.startswith("HTTP_") or name == "REMOTE_ADDR" else f"HTTP_{name}"


def _valid(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address((value or "").strip()))
    except ValueError:
        return None


def client_address(request) -> str | None:
    """The client's IP address as configured (see the module docstring); None if unknown.

    A configured header that is missing or malformed (a request that bypassed the proxy)
    falls back to ``REMOTE_ADDR``: the address the connection really came from.
    """
    header = settings.MORALE_CLIENT_IP_HEADER
    if header:
        entries = request.META.get(_meta_key(header), "").split(",")
        count = max(1, settings.MORALE_TRUSTED_PROXY_COUNT)
        if len(entries) >= count:
            found = _valid(entries[-count])
            if found is not None:
                return found
    return _valid(request.META.get("REMOTE_ADDR"))


def address_group(address: str | None) -> str:
    """The unit a per-address limit counts: the address itself for IPv4, its /64 network
    for IPv6 (one subscriber usually holds a whole /64, so single addresses are free to
    rotate). "" when the address is unknown: all such requests share one bucket."""
    if not address:
        return ""
    ip = ipaddress.ip_address(address)
    if ip.version == 6:
        if ip.ipv4_mapped is not None:  # ::ffff:192.0.2.1 is the IPv4 client 192.0.2.1
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)

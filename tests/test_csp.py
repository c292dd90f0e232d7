"""The Content-Security-Policy (django-csp): on every page, with no inline script or style
allowed, and no template that would need it. The pages' scripts running under it in a
browser: tests/browser/test_security.py (and every browser test fails on a violation)."""

import re
from pathlib import Path

import pytest
from django.urls import reverse

from annotation.research.charts import PALETTE
from tests.factories import AnnotatorFactory, UserFactory

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted((ROOT / "frontend" / "templates").rglob("*.html"))


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_template_has_inline_script_handlers_or_styles(template):
    html = re.sub(r"\{#.*?#\}", "", template.read_text())  # template comments
    inline_scripts = [m for m in re.findall(r"<script\b[^>]*>", html) if "src=" not in m and "application/json" not in m]
    assert inline_scripts == []
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert not re.search(r"\sstyle\s*=", html), "style attribute"
    assert "<style" not in html and "javascript:" not in html


def test_the_legend_colours_in_the_stylesheet_are_the_charts_palette():
    css = (ROOT / "frontend" / "static" / "research.css").read_text()
    found = re.findall(r"\.legend li:nth-child\(7n\+(\d)\) \.swatch \{ background: (#[0-9A-Fa-f]{6}); \}", css)
    assert [(int(k), colour.upper()) for k, colour in found] == [(k + 1, c.upper()) for k, c in enumerate(PALETTE)]


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["anonymous", "annotator", "researcher"])
def test_every_page_sends_the_policy_without_unsafe_inline_script(client, who):
    if who == "annotator":
        client.force_login(AnnotatorFactory().user)
    elif who == "researcher":
        client.force_login(UserFactory(is_staff=True, is_superuser=True))
    for url in ("/", reverse("login"), "/admin/", "/research/", "/api/v1/", "/api/docs/", "/no/such/page/"):
        response = client.get(url)
        policy = directives(response)
        assert policy["script-src"] == ["'self'"], url
        assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"], url
        assert "'unsafe-inline'" not in policy.get("style-src", []) or url == "/api/v1/", url


@pytest.mark.django_db
def test_the_docs_get_only_what_they_need(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    swagger = client.get("/api/docs/")
    assert directives(swagger)["style-src"] == ["'self'"]
    assert "<script>" not in swagger.content.decode()  # its start-up script has a URL of its own
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    redoc = directives(client.get("/api/docs/redoc/"))
    assert redoc["style-src"] == ["'self'", "'unsafe-inline'"] and redoc["worker-src"] == ["blob:"]
    assert redoc["script-src"] == ["'self'"]
    assert "fonts.googleapis" not in client.get("/api/docs/redoc/").content.decode()


def test_a_report_address_is_added_when_set(monkeypatch):
    import importlib

    from morale.settings import base

    monkeypatch.setenv("MORALE_CSP_REPORT_URI", "https://reports.example.org/csp")
    try:
        reloaded = importlib.reload(base)
        assert reloaded.CONTENT_SECURITY_POLICY["DIRECTIVES"]["report-uri"] == ["https://reports.example.org/csp"]
    finally:
        monkeypatch.delenv("MORALE_CSP_REPORT_URI")
        importlib.reload(base)

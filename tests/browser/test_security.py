"""Security in a real browser (Debian's chromium through Playwright).

1. No script from an uploaded file: a valid PNG whose text chunk holds a script, imported
   under the name ``poly.html``, is stored as ``<sha256>.png``, served as ``image/png``
   with ``nosniff`` and a sandboxing policy, and opening it runs nothing; a file stored
   under such a name before the naming rule is served the same way.
2. The pages work under the Content-Security-Policy: the keyboard script, the resend
   script of the outage page, the admin, the browsable API, the dashboard and the API docs
   (Swagger UI and Redoc), with no violation on the console (``conftest.new_page`` fails
   any browser test that sees one).
"""

import csv
import io
import re
import zipfile
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings
from django.db import OperationalError
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from annotation import services
from annotation.dataset.importing import service as import_service
from annotation.models import Context, Judgment
from morale.roles import researcher_make
from tests.factories import AnnotatorFactory, UserFactory, make_context

from .test_annotator_flow import make_scenarios_with_model, rate_by_click, scenario_fieldsets

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Run as HTML, this sets the page title and logs to the console; as an image it is inert text.
SCRIPT = "<html><body><script>document.title = 'PWNED'; console.log('PWNED by the image');</script></body></html>"


def png_with_script() -> bytes:
    """A valid PNG (Pillow opens and decodes it) whose tEXt chunk holds an HTML page with a script."""
    info = PngInfo()
    info.add_text("Comment", SCRIPT)
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 40, 40)).save(buffer, format="PNG", pnginfo=info)
    data = buffer.getvalue()
    assert SCRIPT.encode() in data
    return data


def import_as_poly_html(tmp_path: Path, data: bytes) -> Context:
    images = tmp_path / "images.zip"
    with zipfile.ZipFile(images, "w") as zipped:
        zipped.writestr("poly.html", data)
    rows = tmp_path / "contexts.csv"
    with open(rows, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_path", "setting", "scenario_text"])
        writer.writerow(["poly.html", "a polyglot image", "looking at it"])
    batch = import_service.import_contexts(data_file=rows, images=images)
    assert batch.status == "done", batch.errors
    return Context.objects.get()


def opens_as_inert_image(page, url: str) -> None:
    """The URL answers an image that runs no script when a researcher opens it."""
    logged = []
    page.on("console", lambda message: logged.append(message.text))
    response = page.goto(url)
    assert response.status == 200
    headers = response.headers
    assert headers["content-type"] == "image/png"
    assert headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in headers["content-security-policy"]
    assert page.evaluate("document.contentType") == "image/png"
    page.wait_for_timeout(300)  # time for a script to have run, had there been one
    assert page.title() != "PWNED"
    assert not any("PWNED" in line for line in logged)
    assert page.evaluate("document.querySelectorAll('script').length") == 0


def test_an_imported_png_named_html_is_stored_as_png_and_runs_no_script(new_page, tmp_path):
    data = png_with_script()
    context = import_as_poly_html(tmp_path, data)
    assert context.image.name.endswith(f"/{context.image_sha256}.png")
    assert "poly" not in context.image.name and not context.image.name.endswith(".html")

    researcher = UserFactory()
    researcher_make(researcher)
    page = new_page(user=researcher)
    opens_as_inert_image(page, context.image.url)

    # A file stored under its uploaded name before the rule: still an inert image.
    legacy = Path(settings.MEDIA_ROOT) / "contexts" / "legacy" / "poly.html"
    legacy.parent.mkdir(parents=True, exist_ok=True)
    legacy.write_bytes(data)
    opens_as_inert_image(page, "/media/contexts/legacy/poly.html")
    # A stored file that is no image at all is not served.
    (legacy.parent / "page.html").write_text(SCRIPT)
    assert page.goto("/media/contexts/legacy/page.html").status == 404


def test_annotator_pages_and_their_scripts_work_under_the_csp(new_page, monkeypatch):
    context = make_context("a child crossing a busy street")
    scenarios = make_scenarios_with_model(context, {"holding the child's hand": 4.6, "pushing the child": 1.4})
    annotator = AnnotatorFactory()
    page = new_page(user=annotator.user)

    response = page.goto("/")
    page.wait_for_url(re.compile(r"/annotate/\d+/$"))
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    # keys.js: digits score, letters pick the modality; it runs under the policy.
    assert page.evaluate("document.documentElement.classList.contains('js')")
    page.locator("#main").focus()
    for _ in scenarios:
        page.keyboard.press("4")
        page.keyboard.press("b")
    assert page.locator("input[name^='score-']:checked").count() == len(scenarios)

    # resend.js: a page sent while the database is down comes back and sends itself again.
    monkeypatch.setattr("morale.errors.RETRY_AFTER_SECONDS", 1)
    real_submit = services.assignment_submit_ratings
    calls = []

    def down_once(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real_submit(**kwargs)

    with mock.patch("annotation.services.assignment_submit_ratings", side_effect=down_once):
        page.get_by_role("button", name=re.compile("submit", re.I)).click()
        page.wait_for_url(re.compile(r"/annotate/\d+/(add|check)/$"), timeout=15_000)
    assert len(calls) == 2
    assert Judgment.objects.filter(annotator=annotator).count() == len(scenarios)


def test_admin_browsable_api_dashboard_and_api_docs_work_under_the_csp(new_page):
    context = make_context("a kitchen with a hot stove")
    make_scenarios_with_model(context, {"turning the stove off": 4.8})
    user = UserFactory(username="rita")
    researcher_make(user)
    page = new_page(user=user)

    # The admin: its scripts run (the change list's "select all" checks every row).
    page.goto("/admin/annotation/context/")
    page.locator("#action-toggle").check()
    assert page.locator("input[name='_selected_action']:checked").count() == 1
    for url in ("/admin/", "/admin/annotation/context/add/", f"/admin/annotation/context/{context.pk}/change/",
                "/admin/training/trainingrun/", "/research/", "/api/v1/", "/api/v1/contexts/"):
        assert page.goto(url).status == 200, url
        page.wait_for_load_state("networkidle")
    assert page.locator(".response-info").count() == 1  # the browsable API rendered

    # Swagger UI: its start-up script (its own URL, not inline) loads the schema and draws the operations.
    page.goto("/api/docs/")
    page.locator(".swagger-ui .opblock").first.wait_for(timeout=20_000)
    assert page.locator(".swagger-ui .opblock").count() >= 19
    assert page.errors == []

    # Redoc draws the same operations.
    page.goto("/api/docs/redoc/")
    page.get_by_role("heading", name=re.compile("MORALE API")).first.wait_for(timeout=20_000)
    assert page.get_by_text("Start an export (researchers only)").count() >= 1
    assert page.errors == []

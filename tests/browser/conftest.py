"""Browser fixtures: Debian's chromium driven by Playwright's sync API, one browser per module.

Playwright's sync API runs an asyncio event loop in the test's thread; Django refuses
ORM calls from a thread with a running loop unless DJANGO_ALLOW_ASYNC_UNSAFE is set.
The ORM calls in these tests are plain synchronous calls made between browser steps,
so allowing them is safe here. The variable is set only while a browser module runs
(not at import): set for the whole session it would leak into subprocesses that other
tests start, e.g. `manage.py check --deploy`, which warns about it.

Set MORALE_SCREENSHOT_DIR=/some/folder to keep desktop and phone screenshots of every
page the tests visit (for looking at the layout).
"""

import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, testcases

from tests.conftest import skip_or_fail

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module", autouse=True)
def allow_orm_beside_playwright():
    """DJANGO_ALLOW_ASYNC_UNSAFE=true while this module's tests (and their database teardown) run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture(scope="module")
def chromium(allow_orm_beside_playwright):
    """One headless chromium for the whole module (launching it is the slow part)."""
    executable = shutil.which("chromium")
    if executable is None:
        skip_or_fail("chromium is not installed (apt-get install chromium); the browser tests need it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("the playwright Python package is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


# Reports every Content-Security-Policy violation on the console, where the pages' tests look.
CSP_REPORTER_JS = """document.addEventListener("securitypolicyviolation", (e) => console.error(
  "Content Security Policy violation: " + e.violatedDirective + " blocked " + (e.blockedURI || "inline") +
  " at " + e.sourceFile + ":" + e.lineNumber));"""


# Refusals that are the policy working as meant, each with the reason.
EXPECTED_CSP_REFUSALS = {
    # Redoc's footer shows Redocly's logo from their CDN: blocked, so that the docs load
    # nothing from another site (the image hides itself when it fails).
    "https://cdn.redoc.ly/redoc/logo-mini.svg",
}


def csp_violations(page) -> list[str]:
    """What the browser refused on this page under the Content-Security-Policy, so far
    (less the expected refusals)."""
    return [v for v in page.csp_violations if not any(url in v for url in EXPECTED_CSP_REFUSALS)]


@pytest.fixture
def media_through_the_site(monkeypatch):
    """Django's live server answers ``/media/`` itself (``_MediaFilesHandler``, by the file
    name's type); let the site's own media view answer, as in the embedded default."""
    monkeypatch.setattr(testcases._MediaFilesHandler, "_should_handle", lambda self, path: False)


@pytest.fixture
def new_page(chromium, live_server, media_through_the_site):
    """A factory of pages, each in a fresh browser context (own cookies); all closed after the test.

    Every page of every browser test runs under the site's Content-Security-Policy: a
    violation the browser reports on the console fails the test that saw it.
    """
    contexts = []
    pages = []

    def make(viewport=DESKTOP, user=None, **options):
        context = chromium.new_context(viewport=viewport, base_url=live_server.url, **options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        if user is not None:
            context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session_for(user), "url": live_server.url}])
        context.add_init_script(CSP_REPORTER_JS)
        page = context.new_page()
        page.errors = []  # uncaught JavaScript errors, checked by the tests
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.csp_violations = []
        page.on(
            "console",
            lambda message: page.csp_violations.append(f"{page.url}: {message.text}")
            if "Content Security Policy" in message.text
            else None,
        )
        pages.append(page)
        return page

    yield make
    violations = [v for page in pages for v in csp_violations(page)]
    for context in contexts:
        context.close()
    assert violations == [], "Content-Security-Policy violations:\n" + "\n".join(violations)


def session_for(user) -> str:
    """A logged-in session key for `user` (tests that are not about the login page skip it)."""
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


@pytest.fixture
def shot():
    """shot(page, name): desktop and phone screenshots when MORALE_SCREENSHOT_DIR is set."""
    folder = os.environ.get("MORALE_SCREENSHOT_DIR")

    def take(page, name):
        if not folder:
            return
        Path(folder).mkdir(parents=True, exist_ok=True)
        size = page.viewport_size
        page.screenshot(path=f"{folder}/{name}-desktop.png", full_page=True)
        page.set_viewport_size(PHONE)
        page.screenshot(path=f"{folder}/{name}-phone.png", full_page=True)
        page.set_viewport_size(size)

    return take

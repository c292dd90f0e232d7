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
from django.test import Client

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


@pytest.fixture
def new_page(chromium, live_server):
    """A factory of pages, each in a fresh browser context (own cookies); all closed after the test."""
    contexts = []

    def make(viewport=DESKTOP, user=None, **options):
        context = chromium.new_context(viewport=viewport, base_url=live_server.url, **options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        if user is not None:
            context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session_for(user), "url": live_server.url}])
        page = context.new_page()
        page.errors = []  # uncaught JavaScript errors, checked by the tests
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        return page

    yield make
    for context in contexts:
        context.close()


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

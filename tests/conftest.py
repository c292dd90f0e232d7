"""Shared fixtures. Integration tests never skip silently: with MORALE_REQUIRE_SERVICES=1
(set by .ci/run) a missing service or browser fails the test instead of skipping it."""

import io
import os

import pytest
from django.core.files.base import ContentFile
from PIL import Image

REQUIRE_SERVICES = os.environ.get("MORALE_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip with a visible reason, or fail when the run says services are required."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (MORALE_REQUIRE_SERVICES=1, so this is a failure, not a skip)")
    pytest.skip(reason)


def pytest_collection_modifyitems(config, items):
    from django.conf import settings

    if not settings.configured:  # run with -p no:django (pure tests only)
        return
    from django.db import connection

    if connection.vendor == "postgresql":
        return
    marker = pytest.mark.skip(
        reason="needs PostgreSQL: runs in the PostgreSQL pass of scripts/test.sh (DATABASE_URL=postgres://...)"
    )
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(marker)


def png_bytes(size=(64, 48), color=(200, 120, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def png_file():
    return ContentFile(png_bytes(), name="context.png")


@pytest.fixture(autouse=True)
def _baseline_after_flush(request):
    """Transactional tests flush the database, data migrations included; put the
    migration's current model version back, as a fresh deployment has it."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None or not marker.kwargs.get("transaction"):
        return
    request.getfixturevalue("transactional_db")
    from modelloop.baseline import ensure_current_version
    from modelloop.models import ModelVersion

    ensure_current_version(ModelVersion)

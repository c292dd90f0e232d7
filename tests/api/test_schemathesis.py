"""The API keeps to its schema: schemathesis against the live server, as a researcher and
as an annotator, with every check (``--checks all``): no server error, only documented
status codes, content types and headers, responses that match their schemas, schema-valid
requests accepted and schema-violating ones refused.

The server is pytest-django's live server over the tests' database (the small world of
``conftest.py``); schemathesis runs as its command line, in a subprocess, against
``/api/schema/`` as each token reads it (an annotator's schema holds only what annotators
may call, so each run tests what its reader was promised). Settings that schemathesis
cannot read from the schema are in ``schemathesis.toml`` beside this file.

Bounded: ``MORALE_SCHEMATHESIS_EXAMPLES`` examples per operation (default 10) and a fixed
``MORALE_SCHEMATHESIS_SEED`` (default 1), so CI is repeatable; raise the one or change the
other to search further, e.g. ``MORALE_SCHEMATHESIS_EXAMPLES=100``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from tests.conftest import skip_or_fail

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = int(os.environ.get("MORALE_SCHEMATHESIS_EXAMPLES", "10"))
SEED = int(os.environ.get("MORALE_SCHEMATHESIS_SEED", "1"))
TIMEOUT_SECONDS = 600


@pytest.fixture
def no_broker(monkeypatch):
    """Exports and training runs the API queues are recorded, not sent: no worker runs
    here, and messages left on a shared broker would reach the next test's worker."""
    from annotation import tasks as annotation_tasks
    from training import tasks as training_tasks

    monkeypatch.setattr(annotation_tasks.export_dataset, "delay", lambda *args, **kwargs: None)
    monkeypatch.setattr(training_tasks.execute_run, "apply_async", lambda *args, **kwargs: None)


def schemathesis(base_url: str, user, tmp_path: Path) -> subprocess.CompletedProcess:
    if importlib.util.find_spec("schemathesis") is None:
        skip_or_fail("schemathesis is not installed (pip install -r requirements-dev.txt)")
    token, _ = Token.objects.get_or_create(user=user)
    command = [
        sys.executable, "-c", "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
        "--config-file", str(CONFIG), "--no-color",
        "run", f"{base_url}/api/schema/",
        "--checks", "all",
        "--header", f"Authorization: Token {token.key}",
        "--max-examples", str(EXAMPLES),
        "--seed", str(SEED),
        "--workers", "2",
        "--request-timeout", "30",
        "--wait-for-schema", "30",
        "--generation-database", "none",
        "--report", "junit", "--report-dir", str(tmp_path),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, cwd=tmp_path)


@pytest.mark.parametrize("who", ["researcher", "annotator"])
def test_the_api_keeps_to_its_schema(world, live_server, no_broker, tmp_path, who):
    user = world.researcher if who == "researcher" else world.alice.user
    result = schemathesis(live_server.url, user, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20_000:]
    assert "passed" in output and "Tested:" in output, output[-5_000:]

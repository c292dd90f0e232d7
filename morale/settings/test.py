"""Settings for pytest: the embedded default in a throw-away folder, fast hashing.

`DATABASE_URL` still wins, so the same tests run on PostgreSQL (see tests/conftest.py).
"""

import tempfile
from pathlib import Path

from .base import *  # noqa: F403

SECRET_KEY = "morale-test-key-not-secret"

_TEST_VAR = Path(tempfile.mkdtemp(prefix="morale-test-"))
MEDIA_ROOT = _TEST_VAR / "media"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Tests decide per test whether a canary appears; see tests/factories.py.
MORALE_CANARY_RATE = 0.0
# The embedded default's filesystem broker in the throw-away folder, unless the run names
# a real one (scripts/test.sh's PostgreSQL pass uses Redis). The worker integration test
# starts a real worker process on the same broker and database.
CELERY_BROKER_URL = env.str("MORALE_TEST_BROKER_URL", default="filesystem://localhost/")  # noqa: F405
CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(CELERY_BROKER_URL, _TEST_VAR / "broker")  # noqa: F405
CELERY_BROKER_TRANSPORT = broker_transport_for(CELERY_BROKER_URL)  # noqa: F405
MORALE_TEST_VAR = _TEST_VAR

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not :memory:, so that worker and web processes started by tests share it.
    DATABASES["default"]["TEST"] = {"NAME": str(_TEST_VAR / "test.sqlite3")}  # noqa: F405
STATIC_ROOT = _TEST_VAR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True  # serve frontend/static without collectstatic

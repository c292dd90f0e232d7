"""The embedded default: one machine, SQLite, the filesystem broker, media under ``var/``.

What ``./scripts/run.sh``, ``manage.py``, gunicorn and celery load unless
``DJANGO_SETTINGS_MODULE`` says otherwise. A lab may run a real study in this mode, so
``DEBUG`` stays off unless ``DEBUG=true`` (development). ``run.sh`` sets ``SECRET_KEY``
from ``var/secret_key`` (made once, random); the fixed key below only serves commands run
by hand before that file exists.
"""

from .base import *  # noqa: F403
from .base import env

SECRET_KEY = env.str("SECRET_KEY", default="morale-embedded-development-key-not-for-production")
DEBUG = env.bool("DEBUG", default=False)

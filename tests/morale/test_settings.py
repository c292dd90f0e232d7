"""The settings family: base is safe to share, local is the embedded default, importing creates nothing."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, **env_overrides) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE")}
    env.update(env_overrides)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_importing_the_settings_creates_no_files_or_folders(tmp_path):
    var = tmp_path / "not-yet"
    result = _python("import morale.settings.local, morale.settings.base", MORALE_VAR_DIR=str(var))
    assert result.returncode == 0, result.stderr
    assert not var.exists()


def test_base_sets_no_secret_key_and_keeps_debug_off():
    result = _python("import morale.settings.base as s; print(hasattr(s, 'SECRET_KEY'), s.DEBUG)")
    assert result.stdout.split() == ["False", "False"], result.stderr


def test_manage_py_celery_and_wsgi_default_to_the_local_settings():
    for path in ("manage.py", "morale/celery.py", "morale/wsgi.py"):
        assert '"DJANGO_SETTINGS_MODULE", "morale.settings.local"' in (ROOT / path).read_text(), path

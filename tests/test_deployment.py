"""The deployment files agree with each other and with the production settings.

docker-compose.yml must be valid, run the same processes as scripts/run.sh,
`manage.py check --deploy` must be clean under morale.settings.production, and the
README must list every setting. Nothing here touches a database.
"""

import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import skip_or_fail

ROOT = Path(__file__).resolve().parent.parent


def _run(args, env=None):
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _compose_config(secret_key="not-a-real-secret"):
    if shutil.which("docker-compose") is None:
        skip_or_fail("the docker-compose binary is missing (Debian: apt-get install docker-compose)")
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    if secret_key is not None:
        env["SECRET_KEY"] = secret_key
    return _run(["docker-compose", "-f", "docker-compose.yml", "config"], env=env)


@pytest.fixture(scope="module")
def compose():
    result = _compose_config()
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def _argv(command):
    """A compose `command` (string or list) as an argument list."""
    return shlex.split(command) if isinstance(command, str) else list(command)


def _run_sh_command(name):
    """The argument list scripts/run.sh starts for NAME (WEB_CMD, WORKER_CMD, BEAT_CMD)."""
    script = f'source scripts/run.sh && printf "%s\\n" "${{{name}[@]}}"'
    env = {k: v for k, v in os.environ.items() if k != "MORALE_PORT"}
    result = _run(["bash", "-c", script], env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def _take_option(argv, option):
    """(argv without OPTION and its value, the value)."""
    i = argv.index(option)
    return argv[:i] + argv[i + 2 :], argv[i + 1]


def _production_env(var_dir, **overrides):
    """A bare environment: nothing from this test run (DJANGO_ALLOW_ASYNC_UNSAFE set by the
    browser tests, a developer's DEBUG=1) may loosen or break the production checks, and
    the settings' folders go to VAR_DIR, not the project's var/."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env.update(
        DJANGO_SETTINGS_MODULE="morale.settings.production",
        MORALE_VAR_DIR=str(var_dir),
        DATABASE_URL=f"sqlite:///{var_dir / 'db.sqlite3'}",
        **overrides,
    )
    return env


def test_compose_file_defines_the_five_services(compose):
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(compose)


def test_compose_app_services_share_one_image_and_build(compose):
    built = {name: service for name, service in compose.items() if "build" in service}
    assert {"web", "worker", "beat"} <= set(built)
    assert len({service["image"] for service in built.values()}) == 1
    assert len({repr(service["build"]) for service in built.values()}) == 1


def test_compose_worker_consumes_the_gpu_queue_on_a_reserved_gpu(compose):
    worker = compose["worker"]
    _, queues = _take_option(_argv(worker["command"]), "-Q")
    assert "gpu" in queues.split(",")
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)


def test_compose_refuses_to_run_without_secret_key():
    result = _compose_config(secret_key=None)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_compose_web_runs_migrate_and_collectstatic_then_run_sh_gunicorn(compose):
    shell, flag, script = _argv(compose["web"]["command"])
    assert (shell, flag) == ("sh", "-c")
    steps = [shlex.split(step) for step in script.split("&&")]
    assert steps[0] == ["python", "manage.py", "migrate", "--noinput"]
    assert steps[1] == ["python", "manage.py", "collectstatic", "--noinput"]
    assert steps[-1][0] == "exec"
    compose_web, compose_bind = _take_option(steps[-1][1:], "--bind")
    run_sh_web, run_sh_bind = _take_option(_run_sh_command("WEB_CMD"), "--bind")
    assert compose_web == run_sh_web
    assert (compose_bind, run_sh_bind) == ("0.0.0.0:8000", "127.0.0.1:8000")


def test_compose_workers_run_the_run_sh_worker_over_the_same_queues(compose):
    run_sh_worker, run_sh_queues = _take_option(_run_sh_command("WORKER_CMD"), "-Q")
    compose_queues = set()
    for name, service in compose.items():
        argv = _argv(service.get("command") or [])
        if argv[:4] != ["celery", "-A", "morale", "worker"]:
            continue
        args, queues = _take_option(argv, "-Q")
        assert args == run_sh_worker, name
        compose_queues |= set(queues.split(","))
    # The queue lists differ on purpose: run.sh's one worker serves gpu and the default
    # queue (housekeeping such as the sweeper); compose gives the GPU worker only `gpu`
    # and serves `default` from a CPU worker, so together they cover the same queues.
    assert compose_queues == set(run_sh_queues.split(","))


def test_compose_beat_runs_the_run_sh_beat(compose):
    assert _argv(compose["beat"]["command"]) == _run_sh_command("BEAT_CMD")


def test_production_settings_pass_check_deploy(tmp_path):
    env = _production_env(tmp_path, SECRET_KEY=secrets.token_urlsafe(64))
    result = _run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_settings_refuse_to_load_without_secret_key(tmp_path):
    env = _production_env(tmp_path)
    result = _run([sys.executable, "manage.py", "check"], env=env)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_readme_lists_every_environment_variable_the_settings_read():
    read = set()
    for module in (ROOT / "morale" / "settings").glob("*.py"):
        read |= set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]*)"', module.read_text()))
    readme = (ROOT / "README.md").read_text()
    assert read, "no env(...) calls found: the pattern above is out of date"
    assert sorted(name for name in read if f"`{name}`" not in readme) == []

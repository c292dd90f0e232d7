"""Helpers for tests that start real processes against the test database and broker."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.conftest import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The URL of the database the tests are using right now (the test database)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    if connection.vendor == "postgresql":
        auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
        return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    raise AssertionError(f"unsupported database {connection.vendor}")


def broker_reachable() -> None:
    url = settings.CELERY_BROKER_URL
    if url.startswith("redis://"):
        import redis

        try:
            redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        except redis.RedisError as exc:
            skip_or_fail(f"Redis at {url} does not answer ({exc}); start redis-server")


def process_env(**extra) -> dict:
    """Environment for a worker/web process that shares this test run's database and broker."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="morale.settings.local",
        DATABASE_URL=database_url(),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        MORALE_VAR_DIR=str(settings.MORALE_TEST_VAR),  # same filesystem-broker folders
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@pytest.fixture
def start_worker(tmp_path):
    """Start `celery -A morale worker -Q gpu` (the compose worker's command) as a real process."""
    broker_reachable()
    started = []

    def start(*extra_args):
        log = open(tmp_path / f"worker{len(started)}.log", "w+")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "morale", "worker", "-Q", "gpu", "--concurrency", "1",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", *extra_args],
            cwd=ROOT, env=process_env(), stdout=log, stderr=subprocess.STDOUT,
        )
        started.append((proc, log))
        return proc, log

    yield start
    for proc, log in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def wait_for(predicate, *, timeout: float, what: str, logs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    detail = "\n".join(Path(log.name).read_text()[-3000:] for log in logs)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{detail}")

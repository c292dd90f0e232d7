"""scripts/run.sh supervises web, worker and beat: a process that dies comes back, the
web server never stops answering meanwhile, and Ctrl-C still stops everything.

Runs the README's first command as it is (embedded default in a temporary MORALE_VAR_DIR,
on a free port), in both passes of scripts/test.sh.
"""

import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .conftest import ROOT, wait_for

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=5)
    except urllib.error.HTTPError:
        return True  # a redirect to the login or a 4xx is an answer
    except OSError:
        return False
    return True


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def run_sh(tmp_path):
    """./scripts/run.sh on the embedded default, as a new user starts it."""
    var = tmp_path / "var"
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "SECRET_KEY", "DEBUG")}
    env.update(MORALE_VAR_DIR=str(var), MORALE_PORT=str(port), PYTHONUNBUFFERED="1")
    log = open(tmp_path / "run.log", "w+")
    proc = subprocess.Popen(["./scripts/run.sh"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/accounts/login/"
    try:
        wait_for(lambda: "MORALE is running at" in Path(log.name).read_text(), timeout=600,
                 what="run.sh to start web, worker and beat", logs=[log])
        yield proc, var, url, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def test_a_killed_worker_is_restarted_while_the_web_keeps_answering(run_sh):
    proc, var, url, log = run_sh
    pids = {name: int((var / "run" / f"{name}.pid").read_text()) for name in ("web", "worker", "beat")}
    assert all(alive(pid) for pid in pids.values())
    wait_for(lambda: "ready" in (var / "log" / "worker.log").read_text(), timeout=120,
             what="the worker to be ready", logs=[log])

    failures, polls, stop = [], [], threading.Event()

    def poll_web():
        while not stop.is_set():
            polls.append(time.monotonic())
            if not answers(url):
                failures.append(time.monotonic())
            time.sleep(0.2)

    poller = threading.Thread(target=poll_web)
    poller.start()
    try:
        os.killpg(pids["worker"], signal.SIGKILL)  # the worker and its pool processes, as the OOM killer would
        wait_for(lambda: (var / "run" / "worker.pid").exists()
                 and int((var / "run" / "worker.pid").read_text()) != pids["worker"],
                 timeout=60, what="run.sh to start the worker again", logs=[log])
        new_worker = int((var / "run" / "worker.pid").read_text())
        wait_for(lambda: (var / "log" / "worker.log").read_text().count("ready") >= 2, timeout=120,
                 what="the restarted worker to be ready", logs=[log])
        time.sleep(2)
    finally:
        stop.set()
        poller.join()

    assert failures == [], f"the web did not answer {len(failures)} of {len(polls)} times"
    assert len(polls) > 10
    supervisor = (var / "log" / "supervisor.log").read_text()
    assert f"worker (pid {pids['worker']}) exited with status 137" in supervisor
    assert "restarting it in 1 s (restart 1)" in supervisor
    assert alive(new_worker) and alive(pids["web"]) and alive(pids["beat"])

    proc.send_signal(signal.SIGINT)  # Ctrl-C stops all three
    assert proc.wait(timeout=60) == 130
    time.sleep(0.5)
    assert not any(alive(pid) for pid in (new_worker, pids["web"], pids["beat"]))
    assert not list((var / "run").glob("*.pid"))

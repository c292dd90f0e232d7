"""gunicorn for the load test: start it, wait until it answers, read its access log.

Imported by bench/annotate_load.py.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections import defaultdict
from pathlib import Path

from bench.common import PY, ROOT
from bench.loadtest.pages import RE_ADD, RE_CHECK, RE_RATE, RE_REVIEW


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(*, env, port, workers, threads, worker_class, access_log: Path, server_log: Path, keep_alive: int = 5):
    args = [
        PY, "-m", "gunicorn", "morale.wsgi",
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers),
        "--threads", str(threads),
        "--keep-alive", str(keep_alive),  # used by threaded (gthread) workers; sync workers close each connection
        "--backlog", "2048",
        "--timeout", "120",
        "--access-logfile", str(access_log),
        # request line, status, gunicorn's own time for the request in microseconds
        "--access-logformat", '%(m)s %(U)s %(s)s %(D)s',
    ]
    if worker_class:
        args += ["--worker-class", worker_class]
    out = open(server_log, "wb")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, args


def wait_until_up(port: int, proc, timeout: float = 90.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode} while starting")
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=5)
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("gunicorn did not answer in time")



def classify_access(method: str, path: str, status: str) -> str:
    """Map a gunicorn access-log line to the client's step name."""
    if path == "/accounts/login/":
        return "login page" if method == "GET" else "login"
    if path in ("/annotate/", "/"):
        return "next (redirect)"
    if RE_RATE.match(path):
        return "rating page" if method == "GET" else "submit (+double clicks)"
    if RE_REVIEW.match(path):
        return "review (redirect)"
    if RE_CHECK.match(path):
        return "check page" if method == "GET" else "check submit"
    if RE_ADD.match(path):
        return "add page" if method == "GET" else "add submit"
    if path == "/annotate/checks/":
        return "late checks page"
    if path.startswith("/finish/"):
        return "finish page"
    return f"other {method} {path[:30]}"


def server_latencies(access_log: Path, skip_lines: int) -> dict[str, list[float]]:
    out = defaultdict(list)
    try:
        lines = access_log.read_text().splitlines()[skip_lines:]
    except OSError:
        return {}
    for line in lines:
        parts = line.split()
        if len(parts) != 4:
            continue
        method, path, status, micros = parts
        out[classify_access(method, path, status)].append(int(micros) / 1000.0)
    return out

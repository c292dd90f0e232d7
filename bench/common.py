"""What the benchmark scripts share: the throw-away environment and databases, subprocesses,
samplers, load average, verdicts, table rules and saved results.

Imported by the scripts under bench/ (``from bench import common``) and the bench tests only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
RESULTS_DIR = ROOT / "bench" / "results"  # git-ignored
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# The MM-SCALE data set (paper, section 3.3): the size the benches fill at 1x.
MM_SCALE_CONTEXTS, MM_SCALE_SCENARIOS, MM_SCALE_JUDGMENTS = 9_260, 32_212, 97_000


def log(message: str, *, stamp: str | None = None, to_stdout: bool = False) -> None:
    """One progress line, flushed at once, on stderr (stdout with ``to_stdout``).

    ``stamp=None``: the message alone; ``stamp="bench"``: ``[bench 14:03:07] message``;
    ``stamp=""``: ``[14:03:07] message``.
    """
    if stamp is not None:
        message = f"[{stamp + ' ' if stamp else ''}{time.strftime('%H:%M:%S')}] {message}"
    print(message, file=sys.stdout if to_stdout else sys.stderr, flush=True)


def scenarios_per_context(rng, n_contexts: int, n_scenarios: int) -> list[int]:
    """3 or 4 scenarios for each of `n_contexts` contexts, `n_scenarios` in all (MM-SCALE's
    shape); `rng` (a random.Random) picks the contexts that get 4."""
    per_context = [3] * n_contexts
    for i in rng.sample(range(n_contexts), n_scenarios - 3 * n_contexts):
        per_context[i] = 4
    return per_context


# --- the throw-away environment --------------------------------------------------------------
def sqlite_url(folder: Path) -> str:
    """The SQLite database file of a bench run, in its temporary folder."""
    return f"sqlite:///{folder / 'bench.sqlite3'}"


def bench_env(*, database_url: str, folder: Path, **overrides: str) -> dict[str, str]:
    """This process's environment plus the settings of a throw-away run: ``morale.settings.local``
    on `database_url`, media, var (and the filesystem broker's folder in it) under `folder`,
    DEBUG off, warnings only, the repository on PYTHONPATH. `overrides` win."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="morale.settings.local",
        DATABASE_URL=database_url,
        MEDIA_ROOT=str(folder / "media"),
        MORALE_VAR_DIR=str(folder / "var"),
        CELERY_BROKER_URL="filesystem://localhost/",
        DEBUG="false",
        LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])),
    )
    env.update(overrides)
    return env


def clean_up(folder: Path, *, keep: bool, server_url: str = "", dbname: str = "", prefix: str = "") -> None:
    """The end of a run: drop the throw-away PostgreSQL database `dbname` (when named) and
    delete `folder`; with `keep`, leave both and log where they are."""
    if keep:
        log(f"{prefix}kept database {dbname} and folder {folder}" if dbname else f"{prefix}kept folder {folder}")
        return
    if dbname:
        pg_drop(server_url, dbname)
    shutil.rmtree(folder, ignore_errors=True)


# --- PostgreSQL ----------------------------------------------------------------------------------
def pg_url_for(url: str, dbname: str) -> str:
    """`url` (postgres://user@host:port/anydb) with its database replaced by `dbname`."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{dbname}"))


def pg_db_name(url: str) -> str:
    """The database a postgres:// URL names."""
    return urlsplit(url).path.lstrip("/")


def pg_execute(url: str, *statements: str) -> None:
    """Run `statements` in autocommit (CREATE/DROP DATABASE) on the database `url` names."""
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
    finally:
        conn.close()


def pg_drop(server_url: str, dbname: str) -> None:
    """Drop `dbname` (its open connections too), connected as `server_url` (another database)."""
    pg_execute(server_url, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def pg_recreate(server_url: str, dbname: str) -> None:
    """Drop `dbname` if it exists and create it empty, connected as `server_url`."""
    pg_execute(server_url, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)', f'CREATE DATABASE "{dbname}"')


# --- subprocesses --------------------------------------------------------------------------------
def run_sub(args: list[str], env: dict[str, str], what: str, *, log_stderr: Callable[[str], None] | None = None) -> str:
    """Run a subprocess in the repository root and return its stdout; on failure print the tails
    of its output and raise. With `log_stderr`, the last 20 lines of its stderr go there."""
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode})")
    if log_stderr is not None and proc.stderr.strip():
        for line in proc.stderr.strip().splitlines()[-20:]:
            log_stderr(f"  {what}: {line}")
    return proc.stdout


def last_json_line(text: str) -> dict:
    """The last line of `text` that is a JSON object: how a child phase hands back its result."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON result in output:\n{text[-2000:]}")


def run_json(args: list[str], env: dict[str, str], what: str, **kwargs) -> dict:
    """`run_sub`, then the child's JSON result line."""
    return last_json_line(run_sub(args, env, what, **kwargs))


def migrate(env: dict[str, str], **kwargs) -> float:
    """``manage.py migrate`` in a subprocess with `env`; returns the seconds it took."""
    t = time.perf_counter()
    run_sub([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env, "migrate", **kwargs)
    return time.perf_counter() - t


def could_not_run(exc: Exception) -> int:
    """Log why the bench could not run; return its exit status, 2 (a missed target is 0: a measurement)."""
    log(f"bench could not run: {type(exc).__name__}: {exc}")
    return 2


def stop_process(proc: subprocess.Popen | None, timeout: float = 20.0) -> None:
    """SIGTERM, wait up to `timeout` seconds, then SIGKILL; nothing if it has exited already."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- measuring -----------------------------------------------------------------------------------
def rss_bytes() -> int:
    """This process's resident set size, from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


class PeakRss:
    """Samples this process's RSS every 2 ms while in the with-block: ``.before`` and ``.peak``."""

    def __enter__(self):
        self.before = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def loadavg(fields: int = 1) -> str:
    """The first `fields` load averages from /proc/loadavg as written there ("?" if unreadable)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:fields])
    except OSError:
        return "?"


# --- reporting -----------------------------------------------------------------------------------
def verdict(ok: bool, passed: str = "PASS", missed: str = "FAIL") -> str:
    """The word a report prints beside a target."""
    return passed if ok else missed


def print_title(title: str, details: str = "") -> None:
    """A report's opening: a blank line, the title, this machine (Python, CPUs) + `details`, a blank line."""
    print()
    print(title)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs{details}")
    print()


def print_header(head: str) -> None:
    """A table's header line and a rule of dashes as long as it."""
    print(head)
    print("-" * len(head))


def save_results(stem: str, data, *, indent: int = 2, default=None, note: str = "") -> Path:
    """Write `data` as JSON to ``bench/results/<stem>-<YYYYmmdd-HHMMSS>.json``, print
    ``saved <that path>`` + `note`, and return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=indent, default=default))
    print(f"saved {path.relative_to(ROOT)}{note}")
    return path

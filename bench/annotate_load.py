#!/usr/bin/env python
"""Load test of the annotator flow: N simulated annotators over HTTP against gunicorn.

    .venv/bin/python bench/annotate_load.py                  # PostgreSQL, 50 clients, 30 s
    .venv/bin/python bench/annotate_load.py --db sqlite      # the embedded SQLite default
    .venv/bin/python bench/annotate_load.py --pages 5 --clients 10 --contexts 300

What it does, in order (see bench/README.md):
1. Creates a fresh database (PostgreSQL: ``morale_bench``, dropped and recreated; SQLite:
   a file in a temporary folder), runs ``manage.py migrate`` on it, then fills it in a
   setup subprocess: ``--contexts`` contexts with 4 scenarios each (one shared generated
   PNG), the annotator accounts ``bench-user-<i>`` (consented), and the CURRENT model
   version's predictions for every scenario, computed with the real scorer
   (``modelloop.services.scenarios_score``), so that the flow sees real deltas. Each
   distinct scorer input is scored once; scenarios with an identical input share its result.
2. Starts gunicorn (DEBUG=False) on a free port with the same environment; no Celery
   worker (everything is scored up front; the broker is a throw-away filesystem folder).
3. Runs ``--clients`` simulated annotators (threads with httpx.Client, spread over
   ``--client-procs`` processes). Each logs in, then loops: next -> rating page -> submit
   -> review -> grounding check / add scenario (skip mostly, add ~10%) -> next, until
   the time is up (``--duration``) or it has done ``--pages`` pages, or it reaches the
   finish page. Some clients (``--double-click``) send every submit twice at once.
4. Prints latency per step (client-observed, and gunicorn's own time from its access
   log), judgments/s, CPU ms per stored judgment (gunicorn + PostgreSQL backends, read
   from /proc) and the client's own CPU, the targets with PASS/FAIL, then checks in the
   database that every acknowledged judgment is stored exactly once and no scenario is
   over-filled.

Exit status: 0 when the database checks pass (missed performance targets are a
measurement, not an error), 1 on lost/duplicated judgments, over-fill or counter drift,
2 when the bench itself could not run.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
PY = sys.executable
PASSWORD = "bench-password-8c1f"
USER_PREFIX = "bench-user-"
PG_DB = "morale_bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")

TARGET_P95_MS = 100.0
TARGET_JUDGMENTS_PER_S = 150.0

# Synthetic content: settings and actions of mixed moral valence, so that the zero-shot
# scorer gives a spread of scores and the flow sees both agreements and disagreements.
SETTINGS = [
    "a child crossing a busy street", "an elderly man at a bus stop", "a crowded supermarket checkout",
    "a dog tied outside a cafe", "a student taking an exam", "a hospital waiting room",
    "a wallet lying on the pavement", "a homeless woman asking for change", "a football match in a park",
    "a colleague's unlocked laptop", "a toddler near a swimming pool", "a car accident on a highway",
    "a classroom with a bullied boy", "a queue at a ticket office", "a beach with a drowning swimmer",
    "a shop with an unattended till", "a friend's birthday party", "a lost tourist with a map",
    "a neighbour's garden at night", "a river next to a factory", "a library reading room",
    "a pregnant woman on a crowded train", "a cat stuck in a tree", "an office meeting",
]
ACTIONS = [
    "holding the person's hand to help them", "calling an ambulance", "offering a seat",
    "giving back what was lost", "sharing food", "reporting the danger to the police",
    "taking a photo and walking away", "ignoring everything and scrolling on a phone",
    "shouting insults", "stealing the money", "pushing someone out of the way",
    "cheating by copying the answers", "lying about what happened", "laughing at the victim",
    "throwing rubbish on the ground", "kicking the animal", "reading the private messages",
    "helping to carry the bags", "explaining the way politely", "waiting patiently in line",
    "cutting in front of everyone", "pouring chemicals into the water", "pulling the person to safety",
    "comforting the crying child", "filming the scene for social media", "taking the last item for oneself",
    "returning the extra change", "leaving without paying", "asking if everyone is all right",
    "spreading a rumour about them", "feeding the animal", "blocking the exit",
]


# ------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# --- CPU accounting from /proc ------------------------------------------------------------
def _proc_stat(pid: int) -> tuple[int, str, int, int, int, int] | None:
    """(ppid, comm, utime, stime, cutime, cstime) in clock ticks, or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is state (field 3); utime is field 14 -> index 11
    return int(fields[1]), comm, int(fields[11]), int(fields[12]), int(fields[13]), int(fields[14])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def process_tree_ticks(root_pid: int) -> dict[int, int]:
    """CPU ticks per process of a tree: the root's own + reaped children, each live descendant's own."""
    stats = {}
    for pid in _all_pids():
        st = _proc_stat(pid)
        if st is not None:
            stats[pid] = st
    children = defaultdict(list)
    for pid, st in stats.items():
        children[st[0]].append(pid)
    out = {}
    if root_pid in stats:
        _, _, u, s, cu, cs = stats[root_pid]
        out[root_pid] = u + s + cu + cs
    todo = list(children.get(root_pid, []))
    while todo:
        pid = todo.pop()
        _, _, u, s, _, _ = stats[pid]
        out[pid] = u + s
        todo.extend(children.get(pid, []))
    return out


def postgres_ticks(dbname: str) -> tuple[dict[int, int], dict[int, int]]:
    """(backends of `dbname`, shared background processes) -> CPU ticks per pid.

    Backends are recognised by their process title "postgres: ...: <user> <db> <host> ...".
    Background processes (walwriter, checkpointer, autovacuum, ...) serve every database
    on the server; they are reported apart.
    """
    backends, background = {}, {}
    for pid in _all_pids():
        st = _proc_stat(pid)
        if st is None or st[1] != "postgres":
            continue
        title = _cmdline(pid)
        if f" {dbname} " in title:
            backends[pid] = st[2] + st[3]
        elif title.startswith("postgres:") and " 127.0.0.1(" not in title and "[local]" not in title:
            background[pid] = st[2] + st[3]
    return backends, background


class CpuSampler:
    """Samples CPU ticks of the server processes every second; keeps the last value per pid,
    so processes that exit during the window still count up to their last sample."""

    def __init__(self, gunicorn_pid: int, pg_dbname: str | None):
        self.gunicorn_pid = gunicorn_pid
        self.pg_dbname = pg_dbname
        self.first: dict[str, dict[int, int]] = {}
        self.last: dict[str, dict[int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> dict[str, dict[int, int]]:
        out = {"gunicorn": process_tree_ticks(self.gunicorn_pid)}
        if self.pg_dbname:
            out["pg_backends"], out["pg_background"] = postgres_ticks(self.pg_dbname)
        return out

    def start(self) -> None:
        self.first = self._sample()
        self.last = {k: dict(v) for k, v in self.first.items()}
        self._thread.start()

    def _merge(self, sample) -> None:
        for group, per_pid in sample.items():
            self.last.setdefault(group, {}).update(per_pid)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._merge(self._sample())

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self._merge(self._sample())
        result = {}
        for group, per_pid in self.last.items():
            before = self.first.get(group, {})
            ticks = sum(max(0, t - before.get(pid, 0)) for pid, t in per_pid.items())
            result[group] = ticks * 1000.0 / CLK_TCK  # ms
        return result


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [float(v) for v in parts[:8]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values)
    return total - idle, total


# ------------------------------------------------------------------------------------------
# Environment, database, server
# ------------------------------------------------------------------------------------------
def bench_env(*, database_url: str, tmp: Path, debug: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "morale.settings.base",
            "DATABASE_URL": database_url,
            "MEDIA_ROOT": str(tmp / "media"),
            "STATIC_ROOT": str(tmp / "static"),
            "MORALE_VAR_DIR": str(tmp / "var"),
            "CELERY_BROKER_URL": "filesystem://",
            "CELERY_TASK_ALWAYS_EAGER": "False",
            "DEBUG": "True" if debug else "False",
            "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])),
        }
    )
    return env


def pg_admin_connect(base_url: str):
    import psycopg2

    conn = psycopg2.connect(base_url)
    conn.autocommit = True
    return conn


def pg_url_for(base_url: str, dbname: str) -> str:
    # base_url: postgres://user@host:port/anydb
    head, _, _ = base_url.rpartition("/")
    return f"{head}/{dbname}"


def pg_recreate(base_url: str, dbname: str) -> None:
    conn = pg_admin_connect(base_url)
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{dbname}"')
    conn.close()


def pg_drop(base_url: str, dbname: str) -> None:
    conn = pg_admin_connect(base_url)
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    conn.close()


def run_sub(args: list[str], env: dict[str, str], what: str) -> str:
    """Run a subprocess in the repository root; return stdout, raise with its output on failure."""
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode})")
    if proc.stderr.strip():
        for line in proc.stderr.strip().splitlines()[-20:]:
            log(f"  {what}: {line}")
    return proc.stdout


def last_json_line(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON result in output:\n{text[-2000:]}")


def start_gunicorn(*, env, port, workers, threads, worker_class, access_log: Path, server_log: Path):
    args = [
        PY, "-m", "gunicorn", "morale.wsgi",
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers),
        "--threads", str(threads),
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


def stop_process(proc) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------------------
# Setup and checks: run inside a Django subprocess (hidden sub-commands)
# ------------------------------------------------------------------------------------------
def sub_setup(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contexts", type=int, required=True)
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--score", type=int, default=-1, help="score this many scenarios (-1: all)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)

    import django

    django.setup()
    import hashlib
    import io

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.db import transaction
    from django.utils import timezone
    from PIL import Image

    from annotation.models import Annotator, Context, Scenario
    from modelloop import services as ml
    from modelloop.models import Prediction

    rng = random.Random(a.seed)
    t = time.perf_counter()
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 140, 200)).save(buf, format="PNG")
    png = buf.getvalue()
    image_name = default_storage.save("contexts/bench/bench-context.png", ContentFile(png))
    sha = hashlib.sha256(png).hexdigest()

    with transaction.atomic():
        contexts = Context.objects.bulk_create(
            [
                Context(
                    image=image_name,
                    image_sha256=sha,
                    setting=SETTINGS[i % len(SETTINGS)],
                    source=f"bench/annotate_load.py #{i}",
                    image_origin=Context.ImageOrigin.GENERATED,
                )
                for i in range(a.contexts)
            ],
            batch_size=1000,
        )
        scenarios = []
        for c in contexts:
            for action in rng.sample(ACTIONS, 4):
                scenarios.append(Scenario(context=c, text=action))
        Scenario.objects.bulk_create(scenarios, batch_size=2000)

        User = get_user_model()
        hashed = make_password(PASSWORD)  # hashed once: PBKDF2 is slow on purpose
        users = User.objects.bulk_create(
            [User(username=f"{USER_PREFIX}{i}", password=hashed) for i in range(a.clients)]
        )
        now = timezone.now()
        Annotator.objects.bulk_create(
            [Annotator(user=u, consent_version=settings.MORALE_CONSENT_VERSION, consented_at=now) for u in users]
        )
    setup_s = time.perf_counter() - t

    version = ml.model_version_current()
    ids = list(Scenario.objects.order_by("id").values_list("id", flat=True))
    to_score = ids if a.score < 0 else ids[: a.score]
    # Many scenarios share an identical scorer input (same setting text, same action, same
    # image file). Each distinct input is scored once by the real scorer through
    # scenarios_score; the other scenarios with that very input get a copy of its result
    # (what a feature cache would return). No score is made up.
    inputs = {
        s.pk: (s.context.setting, s.text, s.context.image.name)
        for s in Scenario.objects.filter(pk__in=to_score).select_related("context")
    }
    representative, followers = {}, defaultdict(list)
    for sid in to_score:
        key = inputs[sid]
        if key in representative:
            followers[representative[key]].append(sid)
        else:
            representative[key] = sid
    reps = sorted(representative.values())
    t = time.perf_counter()
    batch = 256
    for start in range(0, len(reps), batch):
        ml.scenarios_score(scenario_ids=reps[start : start + batch], model_version=version)
        done = min(len(reps), start + batch)
        rate = done / max(1e-9, time.perf_counter() - t)
        print(f"scored {done}/{len(reps)} distinct inputs ({rate:.0f} pairs/s)", file=sys.stderr, flush=True)
    from modelloop.scoring import ScoringResult

    rep_preds = Prediction.objects.filter(model_version=version, scenario_id__in=reps)
    copies = []
    for p in rep_preds:
        for sid in followers.get(p.scenario_id, []):
            copies.append(ScoringResult(sid, p.score if p.status == "ok" else None, p.error or "failed"))
    ml.predictions_store(model_version=version, results=copies)
    distinct_scored = len(reps)
    score_s = time.perf_counter() - t
    from django.db import connection

    if connection.vendor == "postgresql":
        # Fresh statistics, as autovacuum would have them on a running server: without
        # this the planner sees the bulk-loaded tables as nearly empty.
        with connection.cursor() as cur:
            cur.execute("ANALYZE")
    preds = Prediction.objects.filter(model_version=version)
    ok = preds.filter(status="ok")
    scores = list(ok.values_list("score", flat=True))
    print(
        json.dumps(
            {
                "contexts": len(contexts),
                "scenarios": len(ids),
                "annotators": len(users),
                "model_version": version.name,
                "scorer": version.scorer,
                "predictions": preds.count(),
                "predictions_ok": len(scores),
                "score_min": min(scores) if scores else None,
                "score_max": max(scores) if scores else None,
                "score_mean": sum(scores) / len(scores) if scores else None,
                "setup_s": setup_s,
                "distinct_inputs_scored": distinct_scored,
                "score_s": score_s,
                "judgments_per_scenario": settings.MORALE_JUDGMENTS_PER_SCENARIO,
                "scenarios_per_page": settings.MORALE_SCENARIOS_PER_PAGE,
                "threshold": settings.MORALE_DISAGREEMENT_THRESHOLD,
                "add_when": settings.MORALE_ADD_SCENARIO_WHEN,
                "canary_rate": settings.MORALE_CANARY_RATE,
                "score_wait_s": settings.MORALE_SCORE_WAIT_SECONDS,
                "db_vendor": connection.vendor,
            }
        )
    )


def sub_check(argv: list[str]) -> None:
    """Compare what the clients were told (acknowledged) with what the database holds."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--ack", required=True)
    a = ap.parse_args(argv)

    import django

    django.setup()
    from django.conf import settings
    from django.db.models import Count

    from annotation.models import Context, Judgment, Scenario
    from annotation.services import judgment_token

    ack = json.loads(Path(a.ack).read_text())
    capacity = settings.MORALE_JUDGMENTS_PER_SCENARIO

    initial = list(
        Judgment.objects.filter(phase=Judgment.Phase.INITIAL).values_list(
            "annotator__user__username", "scenario_id", "client_token", "created_at"
        )
    )
    stored = defaultdict(list)
    for username, sid, token, _ in initial:
        stored[(username, sid)].append(token)

    acked_pairs = {}
    for username, page_token, sids in ack["pages"]:
        pt = uuid.UUID(page_token)
        for sid in sids:
            acked_pairs[(username, sid)] = judgment_token(pt, f"initial-{sid}")

    lost = [k for k in acked_pairs if k not in stored]
    duplicated = [k for k, v in stored.items() if len(v) > 1]
    wrong_token = [k for k, tok in acked_pairs.items() if k in stored and tok not in stored[k]]
    unacked = [k for k in stored if k not in acked_pairs]

    per_scenario = dict(
        Judgment.objects.filter(phase=Judgment.Phase.INITIAL, scenario__is_canary=False)
        .values_list("scenario_id")
        .annotate(n=Count("id"))
    )
    overfilled = {sid: n for sid, n in per_scenario.items() if n > capacity}

    # denormalised counters kept by the submit service
    counter_drift_s = [
        sid
        for sid, jc in Scenario.objects.filter(is_canary=False).values_list("id", "judgment_count")
        if jc != per_scenario.get(sid, 0)
    ]
    per_context = dict(
        Judgment.objects.filter(phase=Judgment.Phase.INITIAL, scenario__is_canary=False)
        .values_list("scenario__context_id")
        .annotate(n=Count("id"))
    )
    counter_drift_c = [
        cid for cid, jc in Context.objects.values_list("id", "judgment_count") if jc != per_context.get(cid, 0)
    ]

    reconf = dict(
        Judgment.objects.filter(phase=Judgment.Phase.RECONFIRMED).values_list("revises_id").annotate(n=Count("id"))
    )
    acked_checks = set(ack["checks"])
    checks_lost = [jid for jid in acked_checks if jid not in reconf]
    checks_dup = [jid for jid, n in reconf.items() if n > 1]
    checks_unacked = [jid for jid in reconf if jid not in acked_checks]

    added_stored = Scenario.objects.filter(origin=Scenario.Origin.ANNOTATOR).count()

    t0, t_end = ack["t0"], ack["t_end"]
    in_window = sum(1 for *_, created in initial if t0 <= created.timestamp() <= t_end)
    first = min((c for *_, c in initial), default=None)
    last = max((c for *_, c in initial), default=None)
    print(
        json.dumps(
            {
                "acknowledged": len(acked_pairs),
                "stored_initial": len(initial),
                "stored_in_window": in_window,
                "first_created": first.timestamp() if first else None,
                "last_created": last.timestamp() if last else None,
                "lost": len(lost),
                "lost_examples": lost[:5],
                "duplicated": len(duplicated),
                "duplicated_examples": duplicated[:5],
                "wrong_token": len(wrong_token),
                "unacknowledged_stored": len(unacked),
                "unacknowledged_examples": unacked[:5],
                "capacity": capacity,
                "max_per_scenario": max(per_scenario.values(), default=0),
                "overfilled": len(overfilled),
                "counter_drift_scenarios": len(counter_drift_s),
                "counter_drift_contexts": len(counter_drift_c),
                "checks_acknowledged": len(acked_checks),
                "reconfirmed_stored": sum(reconf.values()),
                "checks_lost": len(checks_lost),
                "checks_duplicated": len(checks_dup),
                "checks_unacknowledged": len(checks_unacked),
                "added_acknowledged": ack["added"],
                "added_stored": added_stored,
                "scenarios_full": sum(1 for n in per_scenario.values() if n >= capacity),
            },
            default=str,
        )
    )


def sub_profile(argv: list[str]) -> None:
    """One annotator walks the flow in-process (Django test client, full middleware stack).

    Per step: wall ms, number of queries, SQL ms, each distinct query with the project
    code that issued it, and the hottest functions under cProfile.
    """
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=10)
    a = ap.parse_args(argv)

    import cProfile
    import pstats

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from annotation.models import Annotator as AnnotatorModel

    User = get_user_model()
    user = User.objects.create_user(username=f"bench-profile-{uuid.uuid4().hex[:6]}", password=PASSWORD)
    AnnotatorModel.objects.create(
        user=user, consent_version=settings.MORALE_CONSENT_VERSION, consented_at=timezone.now()
    )
    client = Client()
    client.force_login(user)
    rng = random.Random(7)
    root = str(ROOT) + os.sep
    venv = str(ROOT / ".venv")
    steps = defaultdict(list)  # step -> [(ms, [(sql_ms, sql, site)], pstats)]
    plain = defaultdict(list)  # step -> [(wall ms, CPU ms of this process)] without instrumentation
    current: list = []
    instrument = [False]

    def callsite() -> str:
        """The innermost three project frames that led to this query (cheap frame walk)."""
        names, f = [], sys._getframe(2)
        while f is not None and len(names) < 3:
            fn = f.f_code.co_filename
            if fn.startswith(root) and not fn.startswith(venv) and "/bench/" not in fn:
                names.append(f"{Path(fn).relative_to(ROOT)}:{f.f_code.co_name}")
            f = f.f_back
        return " < ".join(names) or "django"

    def wrapper(execute, sql, params, many, context):
        t = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            current.append(((time.perf_counter() - t) * 1000, sql, callsite()))

    def call(step, method, url, data=None):
        if not instrument[0]:
            w, c = time.perf_counter(), time.process_time()
            r = client.get(url) if method == "GET" else client.post(url, data)
            plain[step].append(((time.perf_counter() - w) * 1000, (time.process_time() - c) * 1000))
            return r
        current.clear()
        prof = cProfile.Profile()
        with connection.execute_wrapper(wrapper):
            t = time.perf_counter()
            prof.enable()
            r = client.get(url) if method == "GET" else client.post(url, data)
            prof.disable()
            ms = (time.perf_counter() - t) * 1000
        steps[step].append((ms, list(current), prof))
        return r

    # First half of the pages plain (wall and CPU ms of the Django side), second half
    # instrumented (queries with their call sites, cProfile).
    pages = 0
    url = "/annotate/"
    while pages < a.pages:
        instrument[0] = pages >= a.pages // 2
        r = call("next (redirect)", "GET", url)
        if r.status_code != 302:
            break
        url = r["Location"]
        if url.startswith("/finish"):
            break
        r = call("rating page", "GET", url)
        data, _ = fill_rating_form(r.content.decode(), rng)
        r = call("submit", "POST", url, data)
        pages += 1
        if r.status_code != 302:
            print(f"profile: submit answered HTTP {r.status_code}", file=sys.stderr)
            url = "/annotate/"
            continue
        nxt = r["Location"]
        for _ in range(30):
            r = call("review (redirect)", "GET", nxt)
            if r.status_code != 302:
                time.sleep(2)
                continue
            loc = r["Location"]
            if loc.endswith("/check/"):
                html = call("check page", "GET", loc).content.decode()
                d, _ = fill_check_form(html, rng)
                call("check submit", "POST", loc, d)
                continue
            if loc.endswith("/add/"):
                call("add page", "GET", loc)
                call("add submit (skip)", "POST", loc, {"action": "skip"})
            break
        url = "/annotate/"

    # Where a request's time goes, from cProfile's cumulative times (outermost calls only).
    categories = [
        ("whole request", "django/test/client.py", "request"),
        ("session load", "django/contrib/sessions/backends/db.py", "load"),
        ("  get_user", "django/contrib/auth/__init__.py", "get_user"),
        ("view (annotator_required)", "annotation/views.py", "wrapper"),
        ("template rendering", "django/template/backends/django.py", "render"),
        ("ORM: SQL compile", "django/db/models/sql/compiler.py", "as_sql"),
        ("ORM: execute_sql", "django/db/models/sql/compiler.py", "execute_sql"),
        ("psycopg2/sqlite execute (waits for the DB)", "~", "<method 'execute'"),
        ("commit", "~", "<method 'commit'"),
        ("ORM: model instances (from_db)", "django/db/models/base.py", "from_db"),
        ("ORM: QuerySet filter/exclude building", "django/db/models/query.py", "_filter_or_exclude"),
        ("Model.full_clean", "django/db/models/base.py", "full_clean"),
        ("session save", "django/contrib/sessions/backends/db.py", "save"),
    ]

    def breakdown(funcs):
        out = []
        for label, fpart, name in categories:
            ms = sum(f[5] for f in funcs if fpart in f[0] and (f[2] == name or (name.startswith("<") and f[2].startswith(name))))
            out.append({"what": label, "cum_ms": ms})
        return out

    out = {}
    for step in dict.fromkeys(list(plain) + list(steps)):
        rows = steps.get(step, [])
        pl = plain.get(step, [])
        if not rows:
            out[step] = {
                "n": 0, "plain_n": len(pl),
                "plain_wall_ms": percentile(sorted(x[0] for x in pl), 50),
                "plain_cpu_ms": percentile(sorted(x[1] for x in pl), 50),
                "queries_median": "?", "queries_max": "?", "sql_ms_median": float("nan"),
                "queries": [], "app_cumulative": [], "tottime": [],
            }
            continue
        n = len(rows)
        ms = sorted(r[0] for r in rows)
        nq = sorted(len(r[1]) for r in rows)
        sql_ms = sorted(sum(q[0] for q in r[1]) for r in rows)
        agg = defaultdict(lambda: [0, 0.0])
        for r in rows:
            for qms, sql, site in r[1]:
                key = (re.sub(r"\b\d+\b", "N", re.sub(r"'[^']*'", "'…'", sql))[:140], site)
                agg[key][0] += 1
                agg[key][1] += qms
        queries = [
            {"per_req": c / n, "ms_per_req": t / n, "sql": k[0], "site": k[1]}
            for k, (c, t) in sorted(agg.items(), key=lambda kv: (-kv[1][0], -kv[1][1]))
        ]
        stats = pstats.Stats(rows[0][2])
        for r in rows[1:]:
            stats.add(r[2])
        funcs = []
        for (fname, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():
            funcs.append((fname, line, func, nc / n, tt * 1000 / n, ct * 1000 / n))
        own = [f for f in funcs if f[0].startswith(root) and not f[0].startswith(venv) and "/bench/" not in f[0]]
        short = lambda f: f"{Path(f[0]).relative_to(ROOT) if f[0].startswith(root) else f[0].split('site-packages/')[-1]}:{f[2]}"
        out[step] = {
            "n": n,
            "plain_n": len(pl),
            "plain_wall_ms": percentile(sorted(x[0] for x in pl), 50) if pl else None,
            "plain_cpu_ms": percentile(sorted(x[1] for x in pl), 50) if pl else None,
            "ms_median": percentile(ms, 50),
            "queries_median": nq[n // 2],
            "queries_max": nq[-1],
            "sql_ms_median": percentile(sql_ms, 50),
            "queries": queries,
            "app_cumulative": [
                {"fn": short(f), "calls": f[3], "cum_ms": f[5]} for f in sorted(own, key=lambda f: -f[5])[:10]
            ],
            "tottime": [
                {"fn": short(f), "calls": f[3], "own_ms": f[4]} for f in sorted(funcs, key=lambda f: -f[4])[:10]
            ],
            "breakdown": breakdown(funcs),
        }
    print(json.dumps(out))


# ------------------------------------------------------------------------------------------
# The simulated annotators
# ------------------------------------------------------------------------------------------
RE_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
RE_ERROR = re.compile(r'class="error"[^>]*>([^<]+)<')
RE_FORM = re.compile(r"<form\b[^>]*>(.*?)</form>", re.S)
RE_INPUT = re.compile(r"<input\b([^>]*)>")
RE_SELECT = re.compile(r"<select\b([^>]*)>(.*?)</select>", re.S)
RE_OPTION = re.compile(r"<option\b([^>]*)>")
RE_ATTR = re.compile(r'([\w-]+)(?:="([^"]*)")?')


def _attrs(tag: str) -> dict[str, str]:
    return {k: v for k, v in RE_ATTR.findall(tag)}


def parse_form(html: str, form_id: str | None = None):
    """What a browser would send from a form, before the user clicks anything.

    Returns (fields, radios, selects): fields = hidden/text inputs and pre-checked radios;
    radios = {name: [values]}; selects = {name: [values]} (fields holds the selected one).
    """
    if form_id:
        m = re.search(rf'<form\b[^>]*id="{form_id}"[^>]*>(.*?)</form>', html, re.S)
    else:
        m = RE_FORM.search(html)
    body = m.group(1) if m else html
    fields, radios, selects = {}, defaultdict(list), {}
    for tag in RE_INPUT.findall(body):
        a = _attrs(tag)
        name, kind = a.get("name"), a.get("type", "text")
        if not name:
            continue
        if kind == "radio":
            radios[name].append(a.get("value", "on"))
            if "checked" in a:
                fields[name] = a.get("value", "on")
        elif kind == "checkbox":
            if "checked" in a:
                fields[name] = a.get("value", "on")
        elif kind not in ("submit", "button", "file"):
            fields[name] = a.get("value", "")
    for tag, inner in RE_SELECT.findall(body):
        name = _attrs(tag).get("name")
        if not name:
            continue
        options = [_attrs(o) for o in RE_OPTION.findall(inner)]
        selects[name] = [o.get("value", "") for o in options]
        chosen = next((o for o in options if "selected" in o), options[0] if options else None)
        if chosen is not None:
            fields[name] = chosen.get("value", "")
    return fields, dict(radios), selects


def fill_rating_form(html: str, rng: random.Random) -> tuple[dict, list[int]]:
    """The rating form with every scenario answered: a random score 1-5 and a random modality."""
    fields, radios, _ = parse_form(html, "rating-form")
    sids = []
    for name, values in radios.items():
        if name.startswith("score-"):
            sids.append(int(name[6:]))
        fields[name] = rng.choice(values)
    return fields, sids


def fill_check_form(html: str, rng: random.Random, revise_rate: float = 0.3) -> tuple[dict, list[int]]:
    """The grounding-check form answered like a person would: keep (the score select stays
    as it was rendered) or revise (pick another score), and a modality."""
    fields, radios, selects = parse_form(html, "check-form")
    jids = []
    for name, values in radios.items():
        if name.startswith("decision-"):
            jid = name[9:]
            jids.append(int(jid))
            revise = rng.random() < revise_rate and "revise" in values
            fields[name] = "revise" if revise else "keep"
            if revise and f"score-{jid}" in selects:
                fields[f"score-{jid}"] = rng.choice(selects[f"score-{jid}"])
        else:
            fields[name] = rng.choice(values)
    return fields, jids
RE_RATE = re.compile(r"^/annotate/(\d+)/$")
RE_REVIEW = re.compile(r"^/annotate/(\d+)/review/$")
RE_CHECK = re.compile(r"^/annotate/(\d+)/check/$")
RE_ADD = re.compile(r"^/annotate/(\d+)/add/$")
MODALITIES = ("text", "image", "both")


class Stop(Exception):
    pass


class SimAnnotator:
    """One simulated annotator: a thread with its own httpx.Client (cookies = its session)."""

    def __init__(self, idx, base, cfg, go, deadline_box):
        import httpx

        self.idx = idx
        self.username = f"{USER_PREFIX}{idx}"
        self.base = base
        self.cfg = cfg
        self.rng = random.Random(cfg["seed"] * 1000 + idx)
        self.double = idx in cfg["double_clickers"]
        self.client = httpx.Client(base_url=base, timeout=httpx.Timeout(120.0), follow_redirects=False)
        self.lat = defaultdict(list)  # step -> [ms]
        self.errors = defaultdict(int)  # step/kind -> count
        self.pages: list[tuple[str, str, list[int]]] = []  # acknowledged submits
        self.checks: list[int] = []  # acknowledged grounding-check answers (initial judgment ids)
        self.added = 0
        self.waits = 0
        self.submits = 0
        self.finished = False
        self.go = go
        self.deadline_box = deadline_box
        self.logged_in = False

    # -- plumbing --
    def _deadline_passed(self) -> bool:
        d = self.deadline_box.get("deadline")
        return d is not None and time.time() >= d

    def req(self, step, method, url, data=None, *, expect=(200, 302), check_deadline=True):
        if check_deadline and self.logged_in and self._deadline_passed():
            raise Stop()
        t = time.perf_counter()
        try:
            r = self.client.request(method, url, data=data)
        except Exception as exc:  # noqa: BLE001
            self.errors[f"{step}: {type(exc).__name__}"] += 1
            raise
        self.lat[step].append((time.perf_counter() - t) * 1000.0)
        if r.status_code not in expect:
            m = RE_ERROR.search(r.text) if r.status_code >= 400 else None
            why = f" ({' '.join(m.group(1).split())[:120]})" if m else ""
            self.errors[f"{step}: HTTP {r.status_code}{why}"] += 1
        return r

    @staticmethod
    def location(r) -> str:
        loc = r.headers.get("location", "")
        if loc.startswith("http"):
            loc = "/" + loc.split("/", 3)[3]
        return loc

    # -- flow --
    def login(self):
        r = self.req("login page", "GET", "/accounts/login/", check_deadline=False)
        csrf = RE_CSRF.search(r.text).group(1)
        r = self.req(
            "login",
            "POST",
            "/accounts/login/",
            {"username": self.username, "password": PASSWORD, "csrfmiddlewaretoken": csrf, "next": "/"},
            expect=(302,),
            check_deadline=False,
        )
        if r.status_code != 302:
            raise RuntimeError(f"{self.username}: login failed (HTTP {r.status_code})")
        self.logged_in = True

    def run(self):
        try:
            self.login()
        except Exception as exc:  # noqa: BLE001
            self.errors[f"login: {exc}"] += 1
            self.ready()
            return
        self.ready()
        self.go.wait()
        try:
            self.think(first=True)
            self.loop()
        except Stop:
            pass
        except Exception:  # noqa: BLE001
            self.errors["crash: " + traceback.format_exc(limit=3).replace("\n", " | ")[-300:]] += 1
        finally:
            self.client.close()

    def ready(self):
        self.deadline_box["ready"]()

    def loop(self):
        url = "/annotate/"
        consecutive_errors = 0
        while True:
            if self.cfg["pages"] and self.submits >= self.cfg["pages"] and url == "/annotate/":
                return
            try:
                url = self.step(url)
                consecutive_errors = 0
            except Stop:
                raise
            except Exception:  # noqa: BLE001 - network error: count it and start over
                consecutive_errors += 1
                if consecutive_errors > 20:
                    raise
                time.sleep(0.2)
                url = "/annotate/"
            if url is None:
                return

    def step(self, url: str) -> str | None:
        """Do what the page at `url` asks; return the next URL to visit (None: finished)."""
        if url == "/annotate/" or url == "/":
            r = self.req("next (redirect)", "GET", url, expect=(302,))
            return self.location(r) if r.status_code == 302 else "/annotate/"
        if url.startswith("/finish/"):
            self.req("finish page", "GET", url, expect=(200,))
            self.finished = True
            return None
        if RE_RATE.match(url):
            return self.rate(url)
        if RE_REVIEW.match(url):
            r = self.req("review (redirect)", "GET", url, expect=(200, 302))
            if r.status_code == 302:
                return self.location(r)
            # the "waiting for the model" page: poll like its meta refresh does
            self.waits += 1
            time.sleep(2.0)
            return url
        if RE_CHECK.match(url) or url == "/annotate/checks/":
            return self.check(url)
        if RE_ADD.match(url):
            return self.add(url)
        if url.startswith("/consent/"):
            self.errors["unexpected consent page"] += 1
            r = self.req("consent page", "GET", url)
            csrf = RE_CSRF.search(r.text).group(1)
            self.req("consent", "POST", url, {"agree": "yes", "csrfmiddlewaretoken": csrf})
            return "/annotate/"
        self.errors[f"unexpected URL {url[:40]}"] += 1
        time.sleep(0.2)
        return "/annotate/"

    def rate(self, url):
        r = self.req("rating page", "GET", url, expect=(200, 302))
        if r.status_code == 302:
            return self.location(r)
        data, sids = fill_rating_form(r.text, self.rng)
        token = data["page_token"]
        self.think()
        if self._deadline_passed():
            raise Stop()
        self.submits += 1
        review_url = url + "review/"
        if self.double:
            # a double click: the same form posted twice at once
            results = [None, None]

            def second():
                try:
                    results[1] = self.req("submit (double click)", "POST", url, data, expect=(302,), check_deadline=False)
                except Exception:  # noqa: BLE001
                    pass

            th = threading.Thread(target=second)
            th.start()
            results[0] = self.req("submit", "POST", url, data, expect=(302,), check_deadline=False)  # paired with its twin
            th.join()
            ok = any(x is not None and x.status_code == 302 and self.location(x) == review_url for x in results)
            r = results[0]
        else:
            r = self.req("submit", "POST", url, data, expect=(302,))
            ok = r.status_code == 302 and self.location(r) == review_url
        if ok:
            self.pages.append((self.username, token, sids))
            return review_url
        return "/annotate/"

    def think(self, first: bool = False):
        """Reading and clicking time before a form is sent (exponential, mean --think-ms);
        before the first page, a uniform 0..think delay so that clients do not arrive all
        at once. Never sleeps past the end of the load window."""
        if self.cfg["think_ms"] <= 0:
            return
        mean_s = self.cfg["think_ms"] / 1000.0
        pause = self.rng.uniform(0, mean_s) if first else self.rng.expovariate(1.0 / mean_s)
        d = self.deadline_box.get("deadline")
        if d is not None and time.time() + pause >= d:
            time.sleep(max(0.0, d - time.time()))
            raise Stop()
        time.sleep(pause)

    def check(self, url):
        step = "late checks page" if url == "/annotate/checks/" else "check page"
        r = self.req(step, "GET", url, expect=(200, 302))
        if r.status_code == 302:
            return self.location(r)
        data, jids = fill_check_form(r.text, self.rng)
        self.think()
        r = self.req("check submit", "POST", url, data, expect=(302,))
        if r.status_code == 302:
            self.checks.extend(jids)
            return self.location(r)
        return "/annotate/"

    def add(self, url):
        r = self.req("add page", "GET", url, expect=(200, 302))
        if r.status_code == 302:
            return self.location(r)
        csrf = RE_CSRF.search(r.text).group(1)
        self.think()
        if self.rng.random() < self.cfg["add_rate"]:
            text = f"bench: {self.rng.choice(ACTIONS)} ({self.username}, {uuid.uuid4().hex[:8]})"
            r = self.req(
                "add submit (add)", "POST", url, {"csrfmiddlewaretoken": csrf, "action": "add", "text": text},
                expect=(302,),
            )
            if r.status_code == 302:
                self.added += 1
        else:
            r = self.req(
                "add submit (skip)", "POST", url, {"csrfmiddlewaretoken": csrf, "action": "skip"},
                expect=(302,),
            )
        return self.location(r) if r.status_code == 302 else "/annotate/"

    def result(self) -> dict:
        return {
            "lat": dict(self.lat),
            "errors": dict(self.errors),
            "pages": self.pages,
            "checks": self.checks,
            "added": self.added,
            "waits": self.waits,
            "finished": self.finished,
        }


def client_proc(indices, base, cfg, ready_q, go_evt, deadline_value, result_q):
    """One client process: threads for its annotators; reports readiness, then results."""
    box = {}
    n_ready = [0]
    lock = threading.Lock()

    def ready():
        with lock:
            n_ready[0] += 1
            if n_ready[0] == len(indices):
                ready_q.put(os.getpid())

    box["ready"] = ready

    class Go:
        def wait(self):
            go_evt.wait()
            box["deadline"] = deadline_value.value if deadline_value.value > 0 else None

    go = Go()
    annotators = [SimAnnotator(i, base, cfg, go, box) for i in indices]
    threads = [threading.Thread(target=a.run, daemon=True) for a in annotators]
    for t in threads:
        t.start()
    go_evt.wait()
    c0 = os.times()
    for t in threads:
        t.join()
    c1 = os.times()
    cpu_ms = ((c1.user - c0.user) + (c1.system - c0.system)) * 1000.0
    result_q.put({"cpu_ms": cpu_ms, "end": time.time(), "annotators": [a.result() for a in annotators]})


def run_clients(*, base, n, procs, cfg):
    """Start the client processes, wait for every login, then release the load; gather results."""
    ctx = multiprocessing.get_context("fork")
    ready_q, result_q = ctx.Queue(), ctx.Queue()
    go_evt = ctx.Event()
    deadline_value = ctx.Value("d", 0.0)
    groups = [list(range(i, n, procs)) for i in range(procs)]
    groups = [g for g in groups if g]
    ps = [
        ctx.Process(target=client_proc, args=(g, base, cfg, ready_q, go_evt, deadline_value, result_q), daemon=True)
        for g in groups
    ]
    t_login = time.perf_counter()
    for p in ps:
        p.start()
    for _ in ps:
        ready_q.get(timeout=600)
    login_s = time.perf_counter() - t_login
    return ps, go_evt, deadline_value, result_q, login_s


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------
STEP_ORDER = [
    "login page", "login", "next (redirect)", "rating page", "submit", "submit (double click)",
    "review (redirect)", "check page", "check submit", "add page", "add submit (skip)", "add submit (add)",
    "late checks page", "finish page",
]


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


def fmt_row(cols, widths):
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cols, widths, strict=True)))


def main(argv=None) -> int:
    if len(sys.argv) > 1 and sys.argv[1] in ("_setup", "_check", "_profile"):
        sub = {"_setup": sub_setup, "_check": sub_check, "_profile": sub_profile}[sys.argv[1]]
        sub(sys.argv[2:])
        return 0

    cores = os.cpu_count() or 1
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    ap.add_argument("--pages", type=int, default=0, help="pages per client instead of --duration")
    ap.add_argument("--contexts", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=0, help=f"gunicorn workers (default: 2 x cores = {2 * cores})")
    ap.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker (default 1)")
    ap.add_argument("--worker-class", default="", help="gunicorn worker class (default: gunicorn's choice)")
    ap.add_argument("--client-procs", type=int, default=1, help="client processes the annotator threads are spread over")
    ap.add_argument("--double-click", type=float, default=0.05, help="share of clients that post every submit twice")
    ap.add_argument("--add-rate", type=float, default=0.10, help="on the add-scenario page: share that adds one")
    ap.add_argument("--think-ms", type=float, default=0.0,
                    help="mean think time before each form is sent (exponential; default 0: no think time)")
    ap.add_argument("--score", type=int, default=-1, help="score only this many scenarios up front (-1: all)")
    ap.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/postgres", help="PostgreSQL admin URL")
    ap.add_argument("--keep", action="store_true", help="keep the database (and the temporary folder)")
    ap.add_argument("--profile", type=int, default=0, metavar="PAGES",
                    help="afterwards, walk PAGES pages in-process with one extra annotator and print queries/ms per step")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    workers = args.workers or 2 * cores

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"annotate_load-{args.db}-"))
    (tmp / "var").mkdir()
    (tmp / "media").mkdir()
    if args.db == "postgres":
        database_url = pg_url_for(args.pg_url, PG_DB)
    else:
        database_url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    env = bench_env(database_url=database_url, tmp=tmp)
    gunicorn = None
    exit_code = 2
    load_before = loadavg()
    try:
        # 1. database
        t = time.perf_counter()
        if args.db == "postgres":
            pg_recreate(args.pg_url, PG_DB)
        run_sub([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env, "migrate")
        log(f"fresh {args.db} database migrated in {time.perf_counter() - t:.1f}s ({database_url})")
        t = time.perf_counter()
        setup = last_json_line(
            run_sub(
                [PY, __file__, "_setup", "--contexts", str(args.contexts), "--clients", str(args.clients),
                 "--score", str(args.score), "--seed", str(args.seed)],
                env,
                "setup",
            )
        )
        log(
            f"setup: {setup['contexts']} contexts, {setup['scenarios']} scenarios, {setup['annotators']} annotators; "
            f"{setup['predictions_ok']} predictions of {setup['model_version']}: {setup['distinct_inputs_scored']} distinct "
            f"inputs scored in {setup['score_s']:.1f}s ({setup['distinct_inputs_scored'] / max(setup['score_s'], 1e-9):.0f} pairs/s)"
        )

        # 2. server
        port = free_port()
        access_log, server_log = tmp / "access.log", tmp / "gunicorn.log"
        gunicorn, gargs = start_gunicorn(
            env=env, port=port, workers=workers, threads=args.threads, worker_class=args.worker_class,
            access_log=access_log, server_log=server_log,
        )
        wait_until_up(port, gunicorn)
        log(f"gunicorn up on 127.0.0.1:{port} ({workers} workers x {args.threads} threads)")

        # 3. clients: log in (not timed as load), then release them all at once
        n_double = max(1, round(args.clients * args.double_click)) if args.double_click > 0 else 0
        double_clickers = set(random.Random(args.seed).sample(range(args.clients), min(n_double, args.clients)))
        cfg = {
            "seed": args.seed,
            "pages": args.pages,
            "add_rate": args.add_rate,
            "think_ms": args.think_ms,
            "double_clickers": double_clickers,
        }
        base = f"http://127.0.0.1:{port}"
        procs = max(1, min(args.client_procs, args.clients))
        ps, go_evt, deadline_value, result_q, login_s = run_clients(
            base=base, n=args.clients, procs=procs, cfg=cfg
        )
        log(f"{args.clients} annotators logged in ({login_s:.1f}s); load starts")
        access_skip = len(access_log.read_text().splitlines())
        sampler = CpuSampler(gunicorn.pid, PG_DB if args.db == "postgres" else None)
        sampler.start()
        m0 = machine_cpu()
        own0 = os.times()
        t0 = time.time()
        deadline_value.value = 0.0 if args.pages else t0 + args.duration
        go_evt.set()
        results = [result_q.get(timeout=args.duration + 900 if not args.pages else 3600) for _ in ps]
        t1 = time.time()
        m1 = machine_cpu()
        own1 = os.times()
        server_cpu = sampler.stop()
        for p in ps:
            p.join(timeout=10)
        elapsed = t1 - t0
        log(f"load done in {elapsed:.1f}s")

        # 4. gather
        lat, errors = defaultdict(list), defaultdict(int)
        pages, checks, added, waits, finished = [], [], 0, 0, 0
        client_cpu_ms = sum(r["cpu_ms"] for r in results)
        for r in results:
            for a in r["annotators"]:
                for k, v in a["lat"].items():
                    lat[k].extend(v)
                for k, v in a["errors"].items():
                    errors[k] += v
                pages.extend(a["pages"])
                checks.extend(a["checks"])
                added += a["added"]
                waits += a["waits"]
                finished += int(a["finished"])
        ack_path = tmp / "acknowledged.json"
        t_end = t1 if args.pages else t0 + args.duration
        ack_path.write_text(
            json.dumps({"pages": pages, "checks": checks, "added": added, "t0": t0, "t1": t1, "t_end": t_end})
        )
        check = last_json_line(run_sub([PY, __file__, "_check", "--ack", str(ack_path)], env, "check"))
        srv_lat = server_latencies(access_log, access_skip)

        profile = None
        if args.profile:
            profile = last_json_line(run_sub([PY, __file__, "_profile", "--pages", str(args.profile)], env, "profile"))

        # 5. report
        # The load window runs from the release of the clients until the last one stopped
        # (its in-flight request answered): every judgment of the run was stored in it.
        stored = check["stored_initial"]
        jps = stored / elapsed if elapsed > 0 else 0.0
        planned = t_end - t0
        busy = (m1[0] - m0[0]) / max(1e-9, m1[1] - m0[1]) * 100.0
        busy_ms = (m1[0] - m0[0]) * 1000.0 / CLK_TCK
        main_ms = ((own1.user - own0.user) + (own1.system - own0.system)) * 1000.0
        ours_ms = sum(server_cpu.values()) + client_cpu_ms + main_ms
        others_pct = max(0.0, busy_ms - ours_ms) / max(1e-9, elapsed * 1000.0 * cores) * 100.0
        srv_ms = server_cpu.get("gunicorn", 0.0)
        pg_ms = server_cpu.get("pg_backends", 0.0)
        pgbg_ms = server_cpu.get("pg_background", 0.0)
        total_server_ms = srv_ms + pg_ms + pgbg_ms
        requests_total = sum(len(v) for k, v in lat.items() if k not in ("login page", "login"))

        print()
        print(f"=== bench/annotate_load.py: {args.db}, {args.clients} clients, "
              f"{'%d pages each' % args.pages if args.pages else '%.0fs' % args.duration} ===")
        print(f"settings: db={args.db} ({database_url}) clients={args.clients} client_procs={procs} "
              f"double_clickers={len(double_clickers)} add_rate={args.add_rate} think_ms={args.think_ms:g} contexts={setup['contexts']} "
              f"scenarios={setup['scenarios']}")
        print(f"          gunicorn {' '.join(gargs[gargs.index('--workers'):gargs.index('--backlog')])}"
              f"{' --worker-class ' + args.worker_class if args.worker_class else ' (worker class: ' + ('gthread' if args.threads > 1 else 'sync') + ')'}"
              f", DEBUG=False, DJANGO_SETTINGS_MODULE=morale.settings.base, no Celery worker")
        print(f"          app: {setup['scenarios_per_page']} scenarios/page max, {setup['judgments_per_scenario']} judgments/scenario, "
              f"threshold {setup['threshold']}, add-scenario when {setup['add_when']}, canary rate {setup['canary_rate']}")
        print(f"          model: {setup['model_version']} ({setup['scorer']}) predictions for {setup['predictions_ok']}/{setup['scenarios']} "
              f"scenarios, made up front by the real scorer ({setup['distinct_inputs_scored']} distinct inputs scored in "
              f"{setup['score_s']:.1f}s, copied to scenarios with an identical input); scores {setup['score_min']:.2f}..{setup['score_max']:.2f} "
              f"(mean {setup['score_mean']:.2f})")
        print(f"          machine: {cores} cores, Python {platform.python_version()}, load average before {load_before}")
        print(f"          logins: {args.clients} in {login_s:.1f}s (PBKDF2), before the load window")
        print()
        widths = [26, 7, 8, 8, 8, 8, 3, 8, 8, 8]
        print(fmt_row(["step", "count", "p50 ms", "p95 ms", "p99 ms", "max ms", "|", "srv p50", "srv p95", "srv p99"], widths))
        srv_key = {"submit": "submit (+double clicks)", "submit (double click)": None,
                   "add submit (skip)": "add submit", "add submit (add)": None}
        for step in STEP_ORDER + sorted(k for k in lat if k not in STEP_ORDER):
            v = sorted(lat.get(step, []))
            if not v:
                continue
            sk = srv_key.get(step, step)
            sv = sorted(srv_lat.get(sk, [])) if sk else []
            srv_cols = [f"{percentile(sv, q):.1f}" for q in (50, 95, 99)] if sv else ["", "", ""]
            print(fmt_row([step, len(v)] + [f"{percentile(v, q):.1f}" for q in (50, 95, 99)] + [f"{v[-1]:.0f}", "|"] + srv_cols, widths))
        print("(p50..max: seen by the clients, queueing included; srv: gunicorn's own time per request from its access log,"
              " login excluded; submit srv includes the double clicks, add submit srv both kinds)")
        print()
        print(f"load window: {elapsed:.1f}s, from the release of the logged-in clients until the last one stopped"
              + (f" ({args.pages} pages each or the finish page)" if args.pages
                 else f" (requests in flight at the {planned:.0f}s mark answered)"))
        print(f"pages submitted and acknowledged: {len(pages)}; requests: {requests_total} "
              f"({requests_total / elapsed:.0f}/s); grounding checks answered: {len(checks)}; scenarios added: {added}; "
              f"waiting-page polls: {waits}; clients that reached the finish page: {finished}")
        print(f"throughput: {stored} initial judgments stored in the {elapsed:.1f}s load window -> {jps:.1f} judgments/s ("
              + ("" if args.pages else f"{check['stored_in_window']} of them before the {planned:.0f}s mark, i.e. "
                 f"{check['stored_in_window'] / max(planned, 1e-9):.1f}/s; ")
              + f"{check['reconfirmed_stored']} reconfirmations besides)")
        print(f"server CPU: gunicorn {srv_ms / 1000:.1f}s"
              + (f", PostgreSQL backends {pg_ms / 1000:.1f}s, PostgreSQL background {pgbg_ms / 1000:.1f}s" if args.db == "postgres" else "")
              + f" -> {total_server_ms / max(stored, 1):.1f} CPU ms per stored judgment"
              + (f" (gunicorn {srv_ms / max(stored, 1):.1f} + PostgreSQL {(pg_ms + pgbg_ms) / max(stored, 1):.1f})" if args.db == "postgres" else "")
              + f", {total_server_ms / max(requests_total, 1):.1f} CPU ms per request")
        print(f"client CPU: {client_cpu_ms / 1000:.1f}s = {client_cpu_ms / elapsed / 10:.0f}% of one core "
              f"({client_cpu_ms / max(requests_total, 1):.2f} ms per request)")
        print(f"machine: busy {busy:.0f}% of {cores} cores during the window; processes outside this bench "
              f"(other users, the kernel) took about {others_pct:.0f}% of the {cores} cores{' -> timings are disturbed' if others_pct >= 10 else ''}"
              f" (load average after {loadavg()})")
        per_judgment_all = (total_server_ms + client_cpu_ms) / max(stored, 1)
        print(f"capacity estimate: {per_judgment_all:.1f} CPU ms per stored judgment for server + client together, so with "
              f"the {cores} cores to itself this flow tops out near {cores * 1000.0 / max(per_judgment_all, 1e-9):.0f} "
              f"judgments/s (and a server alone, clients elsewhere, near "
              f"{cores * 1000.0 / max(total_server_ms / max(stored, 1), 1e-9):.0f})")
        if errors:
            print("client-side errors / unexpected answers:")
            for k, v in sorted(errors.items(), key=lambda kv: -kv[1]):
                print(f"  {v:6d}  {k}")
        print()

        def verdict(ok):
            return "PASS" if ok else "FAIL"

        rp95 = percentile(sorted(lat.get("rating page", [])), 95)
        sp95 = percentile(sorted(lat.get("submit", [])), 95)
        print(f"targets (set for 50 clients with no think time on this machine; this run: {args.clients} clients, "
              f"think time {args.think_ms:g} ms):")
        print(f"  {verdict(rp95 < TARGET_P95_MS)}  rating page p95 {rp95:.1f} ms   (target < {TARGET_P95_MS:.0f} ms)")
        print(f"  {verdict(sp95 < TARGET_P95_MS)}  submit p95 {sp95:.1f} ms        (target < {TARGET_P95_MS:.0f} ms)")
        print(f"  {verdict(jps >= TARGET_JUDGMENTS_PER_S)}  {jps:.1f} stored judgments/s (target >= {TARGET_JUDGMENTS_PER_S:.0f}"
              f"{' on PostgreSQL' if args.db == 'postgres' else ' on PostgreSQL; informational here'})")
        print()
        print("database checks:")
        integrity = [
            (check["lost"] == 0, f"lost judgments: {check['lost']} of {check['acknowledged']} acknowledged"
             + (f" e.g. {check['lost_examples']}" if check["lost"] else "")),
            (check["duplicated"] == 0, f"duplicated (annotator, scenario) initial judgments: {check['duplicated']}"),
            (check["wrong_token"] == 0, f"acknowledged judgments stored by another submit than the acknowledged one: {check['wrong_token']}"),
            (check["stored_initial"] == check["acknowledged"],
             f"stored initial judgments = acknowledged: {check['stored_initial']} = {check['acknowledged']}"
             + (f" (unacknowledged stored: {check['unacknowledged_stored']})" if check["unacknowledged_stored"] else "")),
            (check["overfilled"] == 0, f"over-filled scenarios: {check['overfilled']} (max {check['max_per_scenario']} initial "
             f"judgments per scenario, limit {check['capacity']}; {check['scenarios_full']} scenarios full)"),
            (check["counter_drift_scenarios"] == 0 and check["counter_drift_contexts"] == 0,
             f"judgment_count counters match the rows: scenarios off {check['counter_drift_scenarios']}, "
             f"contexts off {check['counter_drift_contexts']}"),
            (check["checks_lost"] == 0 and check["checks_duplicated"] == 0 and check["checks_unacknowledged"] == 0,
             f"grounding checks: {check['checks_acknowledged']} acknowledged, {check['reconfirmed_stored']} reconfirmations "
             f"stored (lost {check['checks_lost']}, duplicated {check['checks_duplicated']}, "
             f"unacknowledged {check['checks_unacknowledged']})"),
            (check["added_stored"] == check["added_acknowledged"],
             f"added scenarios: {check['added_acknowledged']} acknowledged, {check['added_stored']} stored"),
        ]
        for ok, line in integrity:
            print(f"  {verdict(ok)}  {line}")
        exit_code = 0 if all(ok for ok, _ in integrity) else 1

        if profile:
            print()
            print(f"profile: one extra annotator walks {args.profile} pages in-process after the load (Django test client,"
                  " full middleware, no HTTP, no concurrency). First half plain: wall and Python CPU ms (median) of the")
            print("  Django side; second half instrumented: queries per request with the project function that"
                  " issued them, SQL ms, hottest functions under cProfile (its ms inflated by the profiler):")
            for step, p in profile.items():
                plain_txt = (f"plain {p['plain_wall_ms']:.1f} ms wall / {p['plain_cpu_ms']:.1f} ms CPU (n={p['plain_n']}); "
                             if p.get("plain_n") else "")
                print(f"  {step}: {plain_txt}{p['queries_median']} queries (max {p['queries_max']}), "
                      f"SQL {p['sql_ms_median']:.1f} ms median (n={p['n']})")
                for q in p["queries"]:
                    print(f"      x{q['per_req']:<4.1f} {q['ms_per_req']:6.2f} ms  {q['site']:70s}  {q['sql'][:110]}")
                if not p["app_cumulative"]:
                    continue
                print("      hottest project functions (cumulative ms per request):  "
                      + "; ".join(f"{f['fn']} {f['cum_ms']:.1f}" for f in p["app_cumulative"][:6]))
                print("      cumulative ms per request (cProfile):  "
                      + "; ".join(f"{b['what']} {b['cum_ms']:.1f}" for b in p["breakdown"] if b["cum_ms"] >= 0.05))
                print("      hottest functions overall (own ms per request):  "
                      + "; ".join(f"{f['fn']} {f['own_ms']:.2f}" for f in p["tottime"][:6]))

        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = RESULTS_DIR / f"annotate_load-{args.db}-{stamp}.json"
        out.write_text(
            json.dumps(
                {
                    "args": vars(args), "workers": workers, "setup": setup, "check": check, "elapsed_s": elapsed,
                    "judgments_per_s": jps, "server_cpu_ms": server_cpu, "client_cpu_ms": client_cpu_ms,
                    "machine_busy_pct": busy, "others_pct": others_pct,
                    "cpu_ms_per_judgment_server_and_client": per_judgment_all, "errors": errors, "profile": profile,
                    "latency_ms": {k: {q: percentile(sorted(v), q) for q in (50, 95, 99)} | {"n": len(v)} for k, v in lat.items()},
                    "server_latency_ms": {k: {q: percentile(sorted(v), q) for q in (50, 95, 99)} | {"n": len(v)} for k, v in srv_lat.items()},
                },
                default=str,
                indent=1,
            )
        )
        print()
        print(f"saved {out.relative_to(ROOT)}; exit {exit_code}")
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        exit_code = 2
    finally:
        stop_process(gunicorn)
        if gunicorn is not None and exit_code == 2:
            try:
                sys.stderr.write("--- gunicorn log (tail) ---\n" + (tmp / "gunicorn.log").read_text()[-3000:])
            except OSError:
                pass
        if args.keep:
            print(f"kept: database {database_url}, files in {tmp}")
            print(f"      (PostgreSQL: psql {pg_url_for(args.pg_url, PG_DB)})" if args.db == "postgres" else "")
        else:
            if args.db == "postgres":
                try:
                    pg_drop(args.pg_url, PG_DB)
                except Exception as exc:  # noqa: BLE001
                    log(f"could not drop {PG_DB}: {exc}")
            shutil.rmtree(tmp, ignore_errors=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())

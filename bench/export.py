#!/usr/bin/env python
"""Benchmark of the dataset export on MM-SCALE-sized synthetic data in PostgreSQL.

    .venv/bin/python bench/export.py                   # 1x and 2x the MM-SCALE size
    .venv/bin/python bench/export.py --scales 1        # 1x only
    .venv/bin/python bench/export.py --pg-url postgres://postgres@127.0.0.1:5432/postgres

For each scale (1x = 9,260 contexts, 32,212 scenarios, about 97,000 judgments, section 3.3
of the paper):

1. Drops and recreates the throw-away database ``morale_bench_export`` and runs
   ``manage.py migrate`` on it (``morale.settings.base``, media in a temporary folder).
2. Fills it in a subprocess with ``COPY ... FROM STDIN``: users and annotators (2 %
   screened out), one small PNG shared by every context, 3-4 scenarios per context (1 %
   canaries), 2-3 initial judgments per scenario from distinct annotators, and a
   reconfirmation for 7 % of them (the paper: < 7 % of items revised).
3. Measures in a fresh subprocess (so that filling leaves nothing in its memory):
   - ``manage.py export_dataset --format jsonl`` via ``call_command``: the very code path of
     the command. Wall time of two runs, RSS before and the peak RSS during the run
     (sampled every 2 ms from /proc/self/statm), then a third run under ``tracemalloc`` for
     the peak of Python allocations;
   - the CSV and Parquet exports, one run each;
   - ``COPY (SELECT <the judgment rows the export reads, joined with their scenario,
     context and annotator>) TO STDOUT`` into a null sink: the floor of reading the same
     rows out of PostgreSQL, and the export time as a multiple of it.
4. Drops the database and the temporary folder (``--keep`` keeps both), prints the table
   and saves the numbers to ``bench/results/export-postgres-<time>.json`` (git-ignored).

Flat memory = the same peaks at 1x and 2x. Target: the JSONL export in < 10 s at 1x.
Exit status 0 when it ran (a missed target is a measurement), 2 when it could not run.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
DB_NAME = "morale_bench_export"
BASE = {"contexts": 9260, "scenarios": 32212, "judgments": 97000}
RECONFIRM_RATE = 0.07
TARGET_SECONDS = 10.0
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- parent: databases and subprocesses -----------------------------------------------------
def pg_url_for(base_url: str, dbname: str) -> str:
    head, _, _ = base_url.rpartition("/")
    return f"{head}/{dbname}"


def pg_admin(base_url: str, sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(base_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def run_sub(args: list[str], env: dict, what: str) -> str:
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode})")
    return proc.stdout


def last_json_line(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON result in output:\n{text[-2000:]}")


def bench_scale(scale: int, args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="morale-bench-export-"))
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="morale.settings.base",
        DATABASE_URL=pg_url_for(args.pg_url, DB_NAME),
        MEDIA_ROOT=str(tmp / "media"),
        MORALE_VAR_DIR=str(tmp / "var"),
        CELERY_BROKER_URL="filesystem://localhost/",
        DEBUG="false",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    try:
        pg_admin(args.pg_url, f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        pg_admin(args.pg_url, f'CREATE DATABASE "{DB_NAME}"')
        t = time.perf_counter()
        run_sub([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env, "migrate")
        log(f"[{scale}x] database {DB_NAME} migrated in {time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        filled = last_json_line(run_sub([PY, __file__, "--phase", "fill", "--scale", str(scale)], env, "fill"))
        log(f"[{scale}x] filled in {time.perf_counter() - t:.1f}s: {filled}")
        load = Path("/proc/loadavg").read_text().split()[0]
        result = last_json_line(run_sub([PY, __file__, "--phase", "measure"], env, "measure"))
        result.update(scale=scale, filled=filled, load_before=load)
        return result
    finally:
        if args.keep:
            log(f"[{scale}x] kept database {DB_NAME} and folder {tmp}")
        else:
            pg_admin(args.pg_url, f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            shutil.rmtree(tmp, ignore_errors=True)


# --- child: fill ---------------------------------------------------------------------------------
def _copy(cursor, table: str, columns: list[str], rows) -> int:
    buf = io.StringIO()
    n = 0
    for row in rows:
        buf.write("\t".join("\\N" if v is None else str(v) for v in row))
        buf.write("\n")
        n += 1
    buf.seek(0)
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buf)
    return n


def phase_fill(scale: int) -> dict:
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection, transaction
    from PIL import Image

    from modelloop.models import ModelVersion

    rng = random.Random(20261122 + scale)
    n_ctx, n_scn = BASE["contexts"] * scale, BASE["scenarios"] * scale
    n_initial_target = round(BASE["judgments"] * scale / (1 + RECONFIRM_RATE))
    n_annotators = 600 * scale
    now = datetime.now(timezone.utc)

    image_dir = Path(settings.MEDIA_ROOT) / "contexts"
    image_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 90, 160)).save(buffer, format="PNG")
    (image_dir / "bench.png").write_bytes(buffer.getvalue())
    image_sha = hashlib.sha256(buffer.getvalue()).hexdigest()
    version_id = ModelVersion.objects.get(is_current=True).pk

    ts = now.isoformat()
    users = [(i, "!", "f", f"bench-export-{i}", "", "", "", "f", "t", ts) for i in range(1, n_annotators + 1)]
    statuses = ["screened_out" if rng.random() < 0.02 else "active" for _ in range(n_annotators)]
    annotators = [
        (i, uuid.uuid4(), "2026-11-v1", ts, statuses[i - 1], "", "local", "", "{}", ts, i)
        for i in range(1, n_annotators + 1)
    ]
    contexts = [
        (i, "contexts/bench.png", image_sha, f"synthetic setting {i}", "bench", rng.choice(["real", "generated"]),
         "t" if rng.random() < 0.03 else "f", "t", "", 0, ts)
        for i in range(1, n_ctx + 1)
    ]
    per_context = [3] * n_ctx
    for i in rng.sample(range(n_ctx), n_scn - 3 * n_ctx):
        per_context[i] = 4
    scenarios, sid = [], 0
    for c, k in enumerate(per_context, start=1):
        for j in range(k):
            sid += 1
            canary = rng.random() < 0.01
            scenarios.append(
                (sid, c, f"synthetic action {j} number {sid}", "seed", rng.choice([-1, 0, 1, None]),
                 "t" if canary else "f", 1 if canary else None, 2 if canary else None, "f", 0, ts)
            )
    # one completed assignment per annotator (the export does not read assignments)
    assignments = [(i, i, rng.randint(1, n_ctx), "completed", ts, ts, ts, ts) for i in range(1, n_annotators + 1)]

    p_three = (n_initial_target / n_scn) - 2  # 2 or 3 initial judgments per scenario
    judgments, jid = [], 0
    for s in scenarios:
        sid, is_canary = s[0], s[5] == "t"
        mu = rng.randint(1, 5)
        wild = rng.random() < 0.05
        raters = rng.sample(range(1, n_annotators + 1), 3 if rng.random() < p_three else 2)
        for a in raters:
            jid += 1
            score = rng.randint(1, 5) if wild else min(5, max(1, mu + rng.choice([-1, 0, 0, 0, 1])))
            model = round(rng.uniform(1, 5), 3)
            passed = ("t" if score <= 2 else "f") if is_canary else None
            created = (now - timedelta(seconds=rng.randint(0, 3_000_000))).isoformat()
            modality = rng.choices(["image", "text", "both"], [5, 2, 3])[0]
            seconds = round(rng.uniform(3, 60), 1)
            judgments.append(
                (jid, score, modality, "initial", None, None, passed, seconds, uuid.uuid4(), created, a, a, None, None, sid)
            )
            if rng.random() < RECONFIRM_RATE:
                jid += 1
                new = min(5, max(1, score + rng.choice([-1, 0, 0, 1])))
                passed = ("t" if new <= 2 else "f") if is_canary else None
                judgments.append(
                    (jid, new, rng.choice(["image", "text", "both"]), "reconfirmed", model, abs(new - model), passed,
                     seconds, uuid.uuid4(), created, a, a, version_id, jid - 1, sid)
                )

    with transaction.atomic(), connection.cursor() as cur:
        _copy(cur, "auth_user", ["id", "password", "is_superuser", "username", "first_name", "last_name", "email",
                                 "is_staff", "is_active", "date_joined"], users)
        _copy(cur, "annotation_annotator", ["id", "public_id", "consent_version", "consented_at", "status",
                                            "status_reason", "platform", "platform_participant_id", "quality",
                                            "created_at", "user_id"], annotators)
        _copy(cur, "annotation_context", ["id", "image", "image_sha256", "setting", "source", "image_origin",
                                          "image_unreliable", "is_active", "external_id", "judgment_count",
                                          "created_at"], contexts)
        _copy(cur, "annotation_scenario", ["id", "context_id", "text", "origin", "text_only_label", "is_canary",
                                           "canary_min_score", "canary_max_score", "is_retired", "judgment_count",
                                           "created_at"], scenarios)
        _copy(cur, "annotation_assignment", ["id", "annotator_id", "context_id", "status", "created_at", "expires_at",
                                             "submitted_at", "completed_at"], assignments)
        _copy(cur, "annotation_judgment", ["id", "score", "modality", "phase", "model_score", "delta", "canary_passed",
                                           "seconds_spent", "client_token", "created_at", "annotator_id",
                                           "assignment_id", "model_version_id", "revises_id", "scenario_id"], judgments)
        for table in ("auth_user", "annotation_annotator", "annotation_context", "annotation_scenario",
                      "annotation_assignment", "annotation_judgment"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    reconfirmed = sum(1 for j in judgments if j[3] == "reconfirmed")
    return {
        "contexts": len(contexts),
        "scenarios": len(scenarios),
        "judgments": len(judgments),
        "initial": len(judgments) - reconfirmed,
        "reconfirmed": reconfirmed,
        "annotators": n_annotators,
    }


# --- child: measure ---------------------------------------------------------------------------------
def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRss:
    """Samples this process's RSS every 2 ms while in the with-block."""

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


class NullSink(io.RawIOBase):
    def __init__(self):
        self.size = 0

    def writable(self):
        return True

    def write(self, b):
        self.size += len(b)
        return len(b)


COPY_SQL = """
COPY (
    SELECT c.id, c.image, c.image_sha256, c.setting, c.image_origin, c.image_unreliable,
           s.id, s.text, s.origin, s.text_only_label, s.is_canary,
           j.id, a.public_id, a.status, j.score, j.modality, j.phase, j.revises_id, j.model_score,
           j.canary_passed, j.seconds_spent, j.created_at
    FROM annotation_judgment j
    JOIN annotation_scenario s ON s.id = j.scenario_id
    JOIN annotation_context c ON c.id = s.context_id
    JOIN annotation_annotator a ON a.id = j.annotator_id
    ORDER BY s.context_id, j.scenario_id, j.id
) TO STDOUT WITH (FORMAT csv)
"""


def phase_measure() -> dict:
    import django

    django.setup()
    import tracemalloc

    from django.core.management import call_command
    from django.db import connection

    from annotation.models import DatasetExport

    cpu = []

    def export(fmt: str) -> tuple[float, DatasetExport]:
        t, c = time.perf_counter(), time.process_time()
        call_command("export_dataset", "--format", fmt, stdout=io.StringIO())
        elapsed = time.perf_counter() - t
        cpu.append(time.process_time() - c)
        return elapsed, DatasetExport.objects.order_by("-id").first()

    connection.ensure_connection()
    out: dict = {}
    times = []
    for _ in range(2):
        with PeakRss() as rss:
            seconds, record = export("jsonl")
        times.append(seconds)
        out["rss_before_mib"] = rss.before / 2**20
        out["rss_peak_delta_mib"] = max(out.get("rss_peak_delta_mib", 0), (rss.peak - rss.before) / 2**20)
    assert record.status == "done"
    data = Path(record.file.path).read_bytes()
    out["sha256_ok"] = hashlib.sha256(data).hexdigest() == record.sha256
    del data
    out["jsonl_seconds"] = times
    out["jsonl_cpu_seconds"] = min(cpu)
    out["jsonl_mib"] = record.size_bytes / 2**20
    out["counts"] = record.counts

    tracemalloc.start()
    seconds, _ = export("jsonl")
    out["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    out["jsonl_seconds_under_tracemalloc"] = seconds

    for fmt in ("csv", "parquet"):
        seconds, record = export(fmt)
        out[f"{fmt}_seconds"] = seconds
        out[f"{fmt}_mib"] = record.size_bytes / 2**20

    copy_times = []
    for _ in range(2):
        sink = NullSink()
        with connection.cursor() as cur:
            t = time.perf_counter()
            cur.copy_expert(COPY_SQL, sink)
            copy_times.append(time.perf_counter() - t)
    out["copy_seconds"] = copy_times
    out["copy_mib"] = sink.size / 2**20
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM annotation_judgment")
        out["copy_rows"] = cur.fetchone()[0]
    return out


# --- report -------------------------------------------------------------------------------------
def report(results: list[dict]) -> None:
    print()
    print("Dataset export benchmark (PostgreSQL, manage.py export_dataset code path)")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, 1-min load average before measuring: "
          f"{', '.join(r['load_before'] for r in results)}; wall seconds, best of 2 (csv, parquet: 1 run)")
    print()
    head = (f"{'scale':>5} {'contexts':>8} {'scen.':>6} {'judgm.':>7} | {'jsonl s':>7} {'csv s':>6} {'parq. s':>7} | "
            f"{'COPY s':>6} {'jsonl/COPY':>10} | {'tracemalloc':>11} {'RSS delta':>9} | {'jsonl MiB':>9}")
    print(head)
    print("-" * len(head))
    for r in results:
        f = r["filled"]
        jsonl, copy = min(r["jsonl_seconds"]), min(r["copy_seconds"])
        print(
            f"{r['scale']:>4}x {f['contexts']:>8} {f['scenarios']:>6} {f['judgments']:>7} | {jsonl:>7.2f} "
            f"{r['csv_seconds']:>6.2f} {r['parquet_seconds']:>7.2f} | {copy:>6.2f} {jsonl / copy:>9.1f}x | "
            f"{r['tracemalloc_peak_mib']:>7.2f} MiB {r['rss_peak_delta_mib']:>5.1f} MiB | {r['jsonl_mib']:>9.1f}"
        )
    print()
    for r in results:
        c = r["counts"]
        print(f"{r['scale']}x exported: {c['contexts']} contexts, {c['scenarios']} scenarios, {c['judgments']} judgments, "
              f"{c['annotators']} annotators; train/test contexts {c['splits']['train']['contexts']}/"
              f"{c['splits']['test']['contexts']}; dropped {json.dumps(c['dropped'])}; source {json.dumps(c['source'])}; "
              f"sha256 matches file: {r['sha256_ok']}; COPY rows {r['copy_rows']} ({r['copy_mib']:.1f} MiB CSV)")
        print(f"{r['scale']}x jsonl runs {', '.join(f'{t:.2f}' for t in r['jsonl_seconds'])} s; under tracemalloc "
              f"{r['jsonl_seconds_under_tracemalloc']:.2f} s; COPY runs {', '.join(f'{t:.2f}' for t in r['copy_seconds'])} s; "
              f"process RSS before {r['rss_before_mib']:.0f} MiB; CPU of the exporting process (best) "
              f"{r['jsonl_cpu_seconds']:.2f} s")
    one = next((r for r in results if r["scale"] == 1), None)
    if one:
        best = min(one["jsonl_seconds"])
        print(f"\ntarget: JSONL export at 1x < {TARGET_SECONDS:.0f} s: {best:.2f} s -> {'PASS' if best < TARGET_SECONDS else 'FAIL'}")
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(
            f"memory {a['scale']}x -> {b['scale']}x: tracemalloc peak {a['tracemalloc_peak_mib']:.2f} -> "
            f"{b['tracemalloc_peak_mib']:.2f} MiB, RSS delta {a['rss_peak_delta_mib']:.1f} -> {b['rss_peak_delta_mib']:.1f} MiB "
            f"(data x{b['filled']['judgments'] / a['filled']['judgments']:.1f})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--scales", default="1,2", help="comma-separated multiples of the MM-SCALE size")
    parser.add_argument("--keep", action="store_true", help="keep the database and folder of the last scale")
    parser.add_argument("--phase", choices=["fill", "measure"], help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "fill":
        print(json.dumps(phase_fill(args.scale)))
        return 0
    if args.phase == "measure":
        print(json.dumps(phase_measure()))
        return 0
    try:
        results = [bench_scale(int(s), args) for s in args.scales.split(",")]
    except Exception as exc:  # noqa: BLE001 - report and exit 2: the bench could not run
        log(f"bench could not run: {type(exc).__name__}: {exc}")
        return 2
    report(results)
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    saved = results_dir / f"export-postgres-{time.strftime('%Y%m%d-%H%M%S')}.json"
    saved.write_text(json.dumps(results, indent=2))
    print(f"saved {saved.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

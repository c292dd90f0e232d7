#!/usr/bin/env python
"""Benchmark of the dataset export on MM-SCALE-sized synthetic data in PostgreSQL.

    .venv/bin/python bench/export.py                   # 1x and 2x the MM-SCALE size
    .venv/bin/python bench/export.py --scales 1        # 1x only

What it fills, measures and prints: bench/README.md, "export.py".
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file: `bench` and the project importable

from bench import common  # noqa: E402
from bench.common import PY, log  # noqa: E402

DB_NAME = "morale_bench_export"
BASE = {"contexts": common.MM_SCALE_CONTEXTS, "scenarios": common.MM_SCALE_SCENARIOS,
        "judgments": common.MM_SCALE_JUDGMENTS}
RECONFIRM_RATE = 0.07
TARGET_SECONDS = 10.0


# --- parent: databases and subprocesses -----------------------------------------------------
def bench_scale(scale: int, args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="morale-bench-export-"))
    env = common.bench_env(database_url=common.pg_url_for(args.pg_url, DB_NAME), folder=tmp)
    try:
        common.pg_recreate(args.pg_url, DB_NAME)
        seconds = common.migrate(env)
        log(f"[{scale}x] database {DB_NAME} migrated in {seconds:.1f}s")
        t = time.perf_counter()
        filled = common.run_json([PY, __file__, "--phase", "fill", "--scale", str(scale)], env, "fill")
        log(f"[{scale}x] filled in {time.perf_counter() - t:.1f}s: {filled}")
        load = common.loadavg()
        result = common.run_json([PY, __file__, "--phase", "measure"], env, "measure")
        result.update(scale=scale, filled=filled, load_before=load)
        return result
    finally:
        common.clean_up(tmp, keep=args.keep, server_url=args.pg_url, dbname=DB_NAME, prefix=f"[{scale}x] ")


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
    per_context = common.scenarios_per_context(rng, n_ctx, n_scn)
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
        with common.PeakRss() as rss:
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
    common.print_title(
        "Dataset export benchmark (PostgreSQL, manage.py export_dataset code path)",
        f", 1-min load average before measuring: {', '.join(r['load_before'] for r in results)}; "
        "wall seconds, best of 2 (csv, parquet: 1 run)",
    )
    head = (f"{'scale':>5} {'contexts':>8} {'scen.':>6} {'judgm.':>7} | {'jsonl s':>7} {'csv s':>6} {'parq. s':>7} | "
            f"{'COPY s':>6} {'jsonl/COPY':>10} | {'tracemalloc':>11} {'RSS delta':>9} | {'jsonl MiB':>9}")
    common.print_header(head)
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
        print(f"\ntarget: JSONL export at 1x < {TARGET_SECONDS:.0f} s: {best:.2f} s -> {common.verdict(best < TARGET_SECONDS)}")
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
        return common.could_not_run(exc)
    report(results)
    common.save_results("export-postgres", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

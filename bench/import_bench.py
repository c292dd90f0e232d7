#!/usr/bin/env python
"""Speed of the bulk import (``manage.py import_contexts``) at MM-SCALE size.

    .venv/bin/python bench/import_bench.py                     # SQLite (+ PostgreSQL if DATABASE_URL is set)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/morale_import_bench .venv/bin/python bench/import_bench.py
    .venv/bin/python bench/import_bench.py --db sqlite --scale 0.1   # quick

1. **Data** (generated once, in a temporary folder, not timed): a JSON Lines file with
   9,260 contexts and 32,212 scenarios (the MM-SCALE size, paper section 3.3; x
   ``--scale``): 3 or 4 scenarios per context, a ``text_only_label`` on 3 in 4 of them,
   1 % canaries with a score range; and one distinct small PNG per context (64x48, real
   files that Pillow decodes), in 10 sub-folders of a folder, and the same images in a zip.
2. **Databases**: a SQLite file in the temporary folder (``morale.settings.base``: WAL,
   IMMEDIATE transactions), and, when ``DATABASE_URL`` names PostgreSQL, that database,
   **dropped and recreated** (so its name must contain ``bench``; the bench refuses any
   other). ``manage.py migrate`` on each; media and the Celery broker (a filesystem
   folder: the scoring tasks the import queues are written, and thrown away) in the
   temporary folder.
3. **Measured** in a fresh process per database, through ``call_command("import_contexts",
   ...)``, the command's own code path:
   - the first import (everything new: every image checked and stored, contexts and
     scenarios inserted, 1,007 scoring tasks queued): wall time, the service's phases (from
     its log record: parse the file, check the images, match against the database, store
     the images, insert in one transaction, commit + queue the scoring tasks), database
     queries, peak RSS;
   - the same file again (everything already present: images checked again, nothing
     written);
   - the same file again with the images from the zip.

Target (issue 5): the first JSONL import under 60 s. Prints a table and saves the
figures to ``bench/results/import-<time>.json`` (git-ignored). Exit status 0 when it ran
(a missed target is a measurement), 2 when it could not run.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BASE = {"contexts": 9260, "scenarios": 32212}
TARGET_SECONDS = 60.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- data ---------------------------------------------------------------------------------------
def generate(folder: Path, scale: float) -> dict:
    """The JSONL file, an images folder and the same images zipped; returns what was made."""
    from PIL import Image

    rng = random.Random(20261122)
    n_ctx = round(BASE["contexts"] * scale)
    n_scn = round(BASE["scenarios"] * scale)
    per_context = [3] * n_ctx
    for i in rng.sample(range(n_ctx), n_scn - 3 * n_ctx):
        per_context[i] = 4
    images = folder / "images"
    lines, sid = [], 0
    for c in range(n_ctx):
        rel = f"{c % 10:02d}/ctx-{c:05d}.png"
        path = images / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.new("RGB", (64, 48), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        for _ in range(8):  # a few pixels make every image distinct (its own sha256)
            image.putpixel((rng.randrange(64), rng.randrange(48)), (rng.randrange(256), 0, c % 256))
        image.save(path, format="PNG")
        scenarios = []
        for j in range(per_context[c]):
            sid += 1
            scenario = {"text": f"synthetic action {j} number {sid}",
                        "text_only_label": rng.choice([-1, 0, 1, None])}
            if rng.random() < 0.01:
                scenario.update(canary_min_score=1, canary_max_score=2)
            scenarios.append(scenario)
        lines.append(json.dumps({
            "external_id": f"mm-{c:05d}", "image_path": rel, "setting": f"synthetic setting {c}",
            "source": "bench", "image_origin": rng.choice(["real", "generated"]),
            "image_unreliable": rng.random() < 0.03, "scenarios": scenarios,
        }))
    data = folder / "mm-scale.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    archive = folder / "images.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as z:  # PNGs are compressed already
        for path in sorted(images.rglob("*.png")):
            z.write(path, path.relative_to(images).as_posix())
    return {"contexts": n_ctx, "scenarios": sid, "jsonl_mib": data.stat().st_size / 2**20,
            "images_mib": sum(p.stat().st_size for p in images.rglob("*.png")) / 2**20}


# Helpers shared with the export bench (bench/export.py), loaded by path: bench/ is no package.
_spec = importlib.util.spec_from_file_location("bench_export", Path(__file__).with_name("export.py"))
_bench_export = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench_export)
PeakRss, run_sub, last_json_line = _bench_export.PeakRss, _bench_export.run_sub, _bench_export.last_json_line


# --- parent: databases and subprocesses -----------------------------------------------------
def pg_admin(url: str, sql: str) -> None:
    import psycopg2

    parts = urlsplit(url)
    conn = psycopg2.connect(urlunsplit(parts._replace(path="/postgres")))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def bench_db(kind: str, url: str, data_dir: Path, args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"morale-bench-import-{kind}-"))
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="morale.settings.base",
        DATABASE_URL=url,
        MEDIA_ROOT=str(tmp / "media"),
        MORALE_VAR_DIR=str(tmp / "var"),
        CELERY_BROKER_URL="filesystem://localhost/",
        DEBUG="false",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    name = urlsplit(url).path.lstrip("/")
    try:
        if kind == "postgres":
            pg_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            pg_admin(url, f'CREATE DATABASE "{name}"')
        t = time.perf_counter()
        run_sub([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env, "migrate")
        log(f"[{kind}] migrated in {time.perf_counter() - t:.1f}s")
        load = Path("/proc/loadavg").read_text().split()[0]
        result = last_json_line(run_sub([PY, __file__, "--phase", "measure", "--data", str(data_dir)], env, "measure"))
        result.update(db=kind, load_before=load)
        return result
    finally:
        if args.keep:
            log(f"[{kind}] kept {tmp}" + (f" and database {name}" if kind == "postgres" else ""))
        else:
            if kind == "postgres":
                pg_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            shutil.rmtree(tmp, ignore_errors=True)


# --- child: measure ---------------------------------------------------------------------------
class Timings(logging.Handler):
    """Keeps the phase timings the import logs with its "done" record."""

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.last = None

    def emit(self, record):
        if getattr(record, "timings", None):
            self.last = dict(record.timings)


def phase_measure(data_dir: Path) -> dict:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from annotation.models import Context, ImportBatch, Scenario

    timings = Timings()
    logger = logging.getLogger("annotation.imports")
    logger.addHandler(timings)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    data = str(data_dir / "mm-scale.jsonl")
    connection.ensure_connection()

    def one(images: str, *, count_queries: bool = False) -> dict:
        out = io.StringIO()
        with PeakRss() as rss:
            t, c = time.perf_counter(), time.process_time()
            if count_queries:
                with CaptureQueriesContext(connection) as queries:
                    call_command("import_contexts", data, "--images", images, stdout=out)
                n_queries = len(queries.captured_queries)
            else:
                call_command("import_contexts", data, "--images", images, stdout=out)
                n_queries = None
            seconds, cpu = time.perf_counter() - t, time.process_time() - c
        batch = ImportBatch.objects.order_by("-id").first()
        assert batch.status == "done", batch.errors[:5]
        return {"seconds": seconds, "cpu_seconds": cpu, "queries": n_queries, "counts": batch.counts,
                "phases": timings.last, "rss_before_mib": rss.before / 2**20,
                "rss_peak_delta_mib": (rss.peak - rss.before) / 2**20}

    first = one(str(data_dir / "images"), count_queries=True)
    stored = {"contexts": Context.objects.count(), "scenarios": Scenario.objects.count()}
    again = one(str(data_dir / "images"))
    again_zip = one(str(data_dir / "images.zip"))
    assert Context.objects.count() == stored["contexts"] and Scenario.objects.count() == stored["scenarios"]
    broker = Path(os.environ["MORALE_VAR_DIR"]) / "broker"
    queued = sum(1 for p in broker.rglob("*") if p.is_file()) if broker.exists() else None
    return {"first": first, "again": again, "again_zip": again_zip, "stored": stored, "broker_files": queued}


# --- report -------------------------------------------------------------------------------------
def report(results: list[dict], made: dict) -> None:
    print()
    print("Bulk import benchmark (manage.py import_contexts, JSON Lines, images from a folder / zip)")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; data: {made['contexts']} contexts, "
          f"{made['scenarios']} scenarios, JSONL {made['jsonl_mib']:.1f} MiB, images {made['images_mib']:.1f} MiB "
          f"(one distinct PNG per context)")
    print()
    head = (f"{'db':>8} {'load':>5} | {'first s':>7} {'cpu s':>6} {'queries':>7} {'RSS +MiB':>8} | "
            f"{'parse':>5} {'check':>5} {'match':>5} {'store':>5} {'insert':>6} {'queue':>5} | {'again s':>7} {'again zip s':>11}")
    print(head)
    print("-" * len(head))
    for r in results:
        f, p = r["first"], r["first"]["phases"] or {}
        print(f"{r['db']:>8} {r['load_before']:>5} | {f['seconds']:>7.2f} {f['cpu_seconds']:>6.2f} {f['queries']:>7} "
              f"{f['rss_peak_delta_mib']:>8.0f} | {p.get('parse', 0):>5.2f} {p.get('check_images', 0):>5.2f} "
              f"{p.get('match', 0):>5.2f} {p.get('store_images', 0):>5.2f} {p.get('insert', 0):>6.2f} "
              f"{p.get('commit_and_queue_scoring', 0):>5.2f} | "
              f"{r['again']['seconds']:>7.2f} {r['again_zip']['seconds']:>11.2f}")
    print()
    for r in results:
        c, a = r["first"]["counts"], r["again"]["counts"]
        print(f"{r['db']}: first import created {c['contexts_created']} contexts, {c['scenarios_created']} scenarios, "
              f"{c['images_stored']} images; again: {a['contexts_present']} contexts and {a['scenarios_present']} "
              f"scenarios present, {a['contexts_created'] + a['scenarios_created']} created; "
              f"scoring task files in the broker: {r['broker_files']}")
    for r in results:
        best = r["first"]["seconds"]
        print(f"target ({r['db']}): first JSONL import < {TARGET_SECONDS:.0f} s: {best:.2f} s -> "
              f"{'PASS' if best < TARGET_SECONDS else 'FAIL'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"],
                        help="default: sqlite, and postgres too when DATABASE_URL names PostgreSQL")
    parser.add_argument("--scale", type=float, default=1.0, help="multiple of the MM-SCALE size")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders (and the PostgreSQL database)")
    parser.add_argument("--phase", choices=["measure"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "measure":
        print(json.dumps(phase_measure(Path(args.data))))
        return 0

    pg_url = os.environ.get("DATABASE_URL", "")
    is_pg = pg_url.startswith(("postgres://", "postgresql://"))
    kinds = {"sqlite": ["sqlite"], "postgres": ["postgres"], "both": ["sqlite", "postgres"]}.get(
        args.db, ["sqlite", "postgres"] if is_pg else ["sqlite"])
    if "postgres" in kinds:
        if not is_pg:
            log("bench could not run: --db postgres needs DATABASE_URL=postgres://.../<a name with 'bench'>")
            return 2
        if "bench" not in urlsplit(pg_url).path:
            log(f"bench could not run: it drops and recreates the database of DATABASE_URL; "
                f"{urlsplit(pg_url).path.lstrip('/')!r} has no 'bench' in its name, so it is left alone")
            return 2
    data_dir = Path(tempfile.mkdtemp(prefix="morale-bench-import-data-"))
    try:
        t = time.perf_counter()
        made = generate(data_dir, args.scale)
        log(f"generated {made} in {time.perf_counter() - t:.1f}s")
        results = [bench_db(kind, pg_url if kind == "postgres" else "", data_dir, args) for kind in kinds]
    except Exception as exc:  # noqa: BLE001 - report and exit 2: the bench could not run
        log(f"bench could not run: {type(exc).__name__}: {exc}")
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    report(results, made)
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    saved = results_dir / f"import-{time.strftime('%Y%m%d-%H%M%S')}.json"
    saved.write_text(json.dumps({"data": made, "results": results}, indent=2))
    print(f"saved {saved.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

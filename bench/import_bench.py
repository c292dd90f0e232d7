#!/usr/bin/env python
"""Speed of the bulk import (``manage.py import_contexts``) at MM-SCALE size.

    .venv/bin/python bench/import_bench.py                     # SQLite (+ PostgreSQL if DATABASE_URL is set)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/morale_import_bench .venv/bin/python bench/import_bench.py
    .venv/bin/python bench/import_bench.py --db sqlite --scale 0.1   # quick
    .venv/bin/python bench/import_bench.py --ratings 3               # with 3 imported ratings per scenario

What it generates, measures and prints: bench/README.md, "import_bench.py".
"""

from __future__ import annotations

import argparse
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file: `bench` and the project importable

from bench import common  # noqa: E402
from bench.common import PY, log  # noqa: E402

BASE = {"contexts": common.MM_SCALE_CONTEXTS, "scenarios": common.MM_SCALE_SCENARIOS}
TARGET_SECONDS = 60.0


# --- data ---------------------------------------------------------------------------------------
def generate(folder: Path, scale: float, ratings: int = 0) -> dict:
    """The JSONL file (``ratings`` imported ratings per scenario, from a pool of raters), an
    images folder and the same images zipped; returns what was made."""
    from PIL import Image

    rng = random.Random(20261122)
    n_ctx = round(BASE["contexts"] * scale)
    n_scn = round(BASE["scenarios"] * scale)
    per_context = common.scenarios_per_context(rng, n_ctx, n_scn)
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
            if ratings:
                scenario["judgments"] = [
                    {"annotator_id": f"rater-{r}", "score": rng.randint(1, 5),
                     "modality": rng.choice(["text", "image", "both", None])}
                    for r in rng.sample(range(2000), ratings)
                ]
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
    return {"contexts": n_ctx, "scenarios": sid, "ratings": sid * ratings, "jsonl_mib": data.stat().st_size / 2**20,
            "images_mib": sum(p.stat().st_size for p in images.rglob("*.png")) / 2**20}


# --- parent: databases and subprocesses -----------------------------------------------------
def bench_db(kind: str, url: str, data_dir: Path, args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"morale-bench-import-{kind}-"))
    if kind == "sqlite":
        url = common.sqlite_url(tmp)
    env = common.bench_env(database_url=url, folder=tmp)
    name = common.pg_db_name(url)
    server = common.pg_url_for(url, "postgres")  # where to connect to drop and create `name`
    try:
        if kind == "postgres":
            common.pg_recreate(server, name)
        seconds = common.migrate(env)
        log(f"[{kind}] migrated in {seconds:.1f}s")
        load = common.loadavg()
        result = common.run_json([PY, __file__, "--phase", "measure", "--data", str(data_dir)], env, "measure")
        result.update(db=kind, load_before=load)
        return result
    finally:
        common.clean_up(tmp, keep=args.keep, server_url=server, dbname=name if kind == "postgres" else "", prefix=f"[{kind}] ")


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
        with common.PeakRss() as rss:
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
    common.print_title(
        "Bulk import benchmark (manage.py import_contexts, JSON Lines, images from a folder / zip)",
        f"; data: {made['contexts']} contexts, {made['scenarios']} scenarios, {made.get('ratings', 0)} ratings, JSONL {made['jsonl_mib']:.1f} MiB, "
        f"images {made['images_mib']:.1f} MiB (one distinct PNG per context)",
    )
    head = (f"{'db':>8} {'load':>5} | {'first s':>7} {'cpu s':>6} {'queries':>7} {'RSS +MiB':>8} | "
            f"{'parse':>5} {'check':>5} {'match':>5} {'store':>5} {'insert':>6} {'finish':>6} | {'tx':>4} {'lock ms':>7} | "
            f"{'again s':>7} {'again zip s':>11}")
    common.print_header(head)
    for r in results:
        f, p = r["first"], r["first"]["phases"] or {}
        print(f"{r['db']:>8} {r['load_before']:>5} | {f['seconds']:>7.2f} {f['cpu_seconds']:>6.2f} {f['queries']:>7} "
              f"{f['rss_peak_delta_mib']:>8.0f} | {p.get('parse', 0):>5.2f} {p.get('check_images', 0):>5.2f} "
              f"{p.get('match', 0):>5.2f} {p.get('store_images', 0):>5.2f} {p.get('insert', 0):>6.2f} "
              f"{p.get('finish', 0):>6.2f} | {p.get('transactions', 0):>4.0f} {p.get('longest_transaction', 0) * 1000:>7.0f} | "
              f"{r['again']['seconds']:>7.2f} {r['again_zip']['seconds']:>11.2f}")
    print()
    for r in results:
        c, a = r["first"]["counts"], r["again"]["counts"]
        print(f"{r['db']}: first import created {c['contexts_created']} contexts, {c['scenarios_created']} scenarios, "
              f"{c['images_stored']} images; again: {a['contexts_present']} contexts and {a['scenarios_present']} "
              f"scenarios present, {a['contexts_created'] + a['scenarios_created']} created; "
              f"{c.get('ratings_created', 0)} ratings ({a.get('ratings_present', 0)} present again); "
              f"scoring task files in the broker: {r['broker_files']}")
    for r in results:
        best = r["first"]["seconds"]
        print(f"target ({r['db']}): first JSONL import < {TARGET_SECONDS:.0f} s: {best:.2f} s -> "
              f"{common.verdict(best < TARGET_SECONDS)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"],
                        help="default: sqlite, and postgres too when DATABASE_URL names PostgreSQL")
    parser.add_argument("--scale", type=float, default=1.0, help="multiple of the MM-SCALE size")
    parser.add_argument("--ratings", type=int, default=0, metavar="N",
                        help="imported ratings per scenario in the file (default 0: contexts and scenarios only)")
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
        if "bench" not in common.pg_db_name(pg_url):
            log(f"bench could not run: it drops and recreates the database of DATABASE_URL; "
                f"{common.pg_db_name(pg_url)!r} has no 'bench' in its name, so it is left alone")
            return 2
    data_dir = Path(tempfile.mkdtemp(prefix="morale-bench-import-data-"))
    try:
        t = time.perf_counter()
        made = generate(data_dir, args.scale, args.ratings)
        log(f"generated {made} in {time.perf_counter() - t:.1f}s")
        results = [bench_db(kind, pg_url if kind == "postgres" else "", data_dir, args) for kind in kinds]
    except Exception as exc:  # noqa: BLE001 - report and exit 2: the bench could not run
        return common.could_not_run(exc)
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    report(results, made)
    common.save_results("import", {"data": made, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Benchmark of the researchers' admin list pages at MM-SCALE size on PostgreSQL.

    .venv/bin/python bench/admin_lists.py
    .venv/bin/python bench/admin_lists.py --pg-url postgres://postgres@127.0.0.1:5432/postgres --repeat 15

1. Drops and recreates the throw-away database ``morale_bench_admin``, migrates it, and
   fills it with ``bench/export.py``'s filler (9,260 contexts, 32,212 scenarios, about
   97,000 judgments, 7 % reconfirmed, 2 % screened-out annotators) plus model predictions
   and deltas on the judgments, so the disagreement list has rows.
2. In a fresh subprocess, logs in a researcher (staff + "researcher" group, not a
   superuser) with Django's test client and requests every list page, plain and with
   a filter, a search or a sort: one warm-up request, then ``--repeat`` timed ones. The
   time is the whole request in process: middleware, queries, template rendering.
3. Prints median and p95 per page against the 300 ms target and saves the numbers to
   ``bench/results/admin-lists-<time>.json`` (git-ignored); drops the database unless
   ``--keep``.

Exit status 0 when it ran (a missed target is a measurement), 2 when it could not run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
DB_NAME = "morale_bench_admin"
TARGET_MS = 300.0

_spec = importlib.util.spec_from_file_location("bench_export", ROOT / "bench" / "export.py")
bench_export = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_export)

PAGES = [
    ("contexts", "admin:annotation_context_changelist", {}),
    ("contexts, search", "admin:annotation_context_changelist", {"q": "street"}),
    ("scenarios", "admin:annotation_scenario_changelist", {}),
    ("scenarios, retired filter", "admin:annotation_scenario_changelist", {"is_retired__exact": "0"}),
    ("scenarios, search", "admin:annotation_scenario_changelist", {"q": "hand"}),
    ("judgments", "admin:annotation_judgment_changelist", {}),
    ("judgments, reconfirmed", "admin:annotation_judgment_changelist", {"phase__exact": "reconfirmed"}),
    ("judgments, score 1, oldest first", "admin:annotation_judgment_changelist", {"score": "1", "o": "1"}),
    ("disagreements", "admin:annotation_disagreement_changelist", {}),
    ("annotators", "admin:annotation_annotator_changelist", {}),
    ("annotators, screened out", "admin:annotation_annotator_changelist", {"status__exact": "screened_out"}),
    ("annotators, by judgments", "admin:annotation_annotator_changelist", {"o": "-7"}),
    ("model versions", "admin:modelloop_modelversion_changelist", {}),
    ("predictions", "admin:modelloop_prediction_changelist", {}),
    ("exports", "admin:annotation_datasetexport_changelist", {}),
    ("training runs", "admin:training_trainingrun_changelist", {}),
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def add_predictions() -> dict:
    """Score every scenario with the current version and give initial judgments their delta."""
    from django.db import connection

    from modelloop.services import model_version_current

    version = model_version_current()
    with connection.cursor() as cur:
        cur.execute(
            """INSERT INTO modelloop_prediction (model_version_id, scenario_id, status, score, error, created_at)
               SELECT %s, id, 'ok', 1 + (id * 7919 %% 400) / 100.0, '', now() FROM annotation_scenario""",
            [version.pk],
        )
        predictions = cur.rowcount
    # Judgments are append-only (a trigger refuses UPDATE): the filler wrote them without a
    # model score, so set it while the trigger is off, as a data migration would.
    with connection.cursor() as cur:
        cur.execute("ALTER TABLE annotation_judgment DISABLE TRIGGER USER")
        cur.execute(
            """UPDATE annotation_judgment j SET model_version_id = %s, model_score = p.score, delta = abs(j.score - p.score)
               FROM modelloop_prediction p WHERE p.scenario_id = j.scenario_id AND p.model_version_id = %s""",
            [version.pk, version.pk],
        )
        updated = cur.rowcount
        cur.execute("ALTER TABLE annotation_judgment ENABLE TRIGGER USER")
    return {"predictions": predictions, "judgments_with_delta": updated}


def phase_measure(repeat: int) -> dict:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    from annotation.roles import researcher_make

    filled = add_predictions()
    user = get_user_model().objects.create_user("bench-researcher", password="bench-only-password-1")
    researcher_make(user)
    client = Client()
    client.force_login(user)
    results = []
    for label, name, query in PAGES:
        url = reverse(name)
        response = client.get(url, query)  # warm-up: caches, first compile of templates
        if response.status_code != 200:
            raise RuntimeError(f"{label}: {url} answered {response.status_code}")
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            client.get(url, query)
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        results.append(
            {
                "page": label,
                "url": url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""),
                "median_ms": statistics.median(times),
                "p95_ms": times[min(len(times) - 1, int(0.95 * len(times)))],
            }
        )
    return {"filled": filled, "pages": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the database and folder")
    parser.add_argument("--phase", choices=["measure"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "measure":
        print(json.dumps(phase_measure(args.repeat)))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="morale-bench-admin-"))
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="morale.settings.base",
        DATABASE_URL=bench_export.pg_url_for(args.pg_url, DB_NAME),
        MEDIA_ROOT=str(tmp / "media"),
        MORALE_VAR_DIR=str(tmp / "var"),
        CELERY_BROKER_URL="filesystem://localhost/",
        ALLOWED_HOSTS="testserver,localhost",
        DEBUG="false",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    try:
        bench_export.pg_admin(args.pg_url, f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        bench_export.pg_admin(args.pg_url, f'CREATE DATABASE "{DB_NAME}"')
        bench_export.run_sub([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env, "migrate")
        t = time.perf_counter()
        filled = bench_export.last_json_line(
            bench_export.run_sub([PY, str(ROOT / "bench" / "export.py"), "--phase", "fill", "--scale", "1"], env, "fill")
        )
        log(f"filled in {time.perf_counter() - t:.1f}s: {filled}")
        load = Path("/proc/loadavg").read_text().split()[0]
        result = bench_export.last_json_line(
            bench_export.run_sub([PY, __file__, "--phase", "measure", "--repeat", str(args.repeat)], env, "measure")
        )
        result.update(filled={**filled, **result["filled"]}, load_before=load)
    except Exception as exc:  # noqa: BLE001 - report and exit 2: the bench could not run
        log(f"bench could not run: {type(exc).__name__}: {exc}")
        return 2
    finally:
        if args.keep:
            log(f"kept database {DB_NAME} and folder {tmp}")
        else:
            bench_export.pg_admin(args.pg_url, f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"Admin list pages, PostgreSQL, MM-SCALE size ({result['filled']}), load average before: {result['load_before']}")
    print(f"{'page':32} {'median ms':>10} {'p95 ms':>8}  target < {TARGET_MS:.0f} ms")
    for row in result["pages"]:
        verdict = "met" if row["p95_ms"] < TARGET_MS else "MISSED"
        print(f"{row['page']:32} {row['median_ms']:10.1f} {row['p95_ms']:8.1f}  {verdict}")
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    saved = results_dir / f"admin-lists-{time.strftime('%Y%m%d-%H%M%S')}.json"
    saved.write_text(json.dumps(result, indent=2))
    print(f"saved {saved.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

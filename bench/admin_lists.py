#!/usr/bin/env python
"""Benchmark of the researchers' admin list pages at MM-SCALE size on PostgreSQL.

    .venv/bin/python bench/admin_lists.py
    .venv/bin/python bench/admin_lists.py --pg-url postgres://postgres@127.0.0.1:5432/postgres --repeat 15

What it fills, requests and prints: bench/README.md, "admin_lists.py".
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file: `bench` and the project importable

from bench import common  # noqa: E402
from bench.common import PY, ROOT, log  # noqa: E402

DB_NAME = "morale_bench_admin"
TARGET_MS = 300.0

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
    ("scenarios, reported", "admin:annotation_scenario_changelist", {"reported": "yes"}),
    ("written scenarios to review", "admin:annotation_writtenscenario_changelist", {}),
    ("reported scenarios", "admin:annotation_reportedscenario_changelist", {"decision": "all"}),
    ("item reports", "admin:annotation_itemreport_changelist", {}),
    ("model versions", "admin:modelloop_modelversion_changelist", {}),
    ("predictions", "admin:modelloop_prediction_changelist", {}),
    ("exports", "admin:annotation_datasetexport_changelist", {}),
    ("training runs", "admin:training_trainingrun_changelist", {}),
]


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

    from morale.roles import researcher_make

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
    env = common.bench_env(
        database_url=common.pg_url_for(args.pg_url, DB_NAME), folder=tmp, ALLOWED_HOSTS="testserver,localhost"
    )
    try:
        common.pg_recreate(args.pg_url, DB_NAME)
        common.migrate(env)
        t = time.perf_counter()
        # The export bench's filler, in its own process: the same data as there.
        filled = common.run_json([PY, str(ROOT / "bench" / "export.py"), "--phase", "fill", "--scale", "1"], env, "fill")
        log(f"filled in {time.perf_counter() - t:.1f}s: {filled}")
        load = common.loadavg()
        result = common.run_json([PY, __file__, "--phase", "measure", "--repeat", str(args.repeat)], env, "measure")
        result.update(filled={**filled, **result["filled"]}, load_before=load)
    except Exception as exc:  # noqa: BLE001 - report and exit 2: the bench could not run
        return common.could_not_run(exc)
    finally:
        common.clean_up(tmp, keep=args.keep, server_url=args.pg_url, dbname=DB_NAME)

    print(f"Admin list pages, PostgreSQL, MM-SCALE size ({result['filled']}), load average before: {result['load_before']}")
    print(f"{'page':32} {'median ms':>10} {'p95 ms':>8}  target < {TARGET_MS:.0f} ms")
    for row in result["pages"]:
        verdict = common.verdict(row["p95_ms"] < TARGET_MS, "met", "MISSED")
        print(f"{row['page']:32} {row['median_ms']:10.1f} {row['p95_ms']:8.1f}  {verdict}")
    common.save_results("admin-lists", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

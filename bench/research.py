#!/usr/bin/env python
"""Benchmark of quality control, the agreement/analysis figures and the researchers'
dashboard on MM-SCALE-sized synthetic data.

    .venv/bin/python bench/research.py                      # SQLite, in a temporary folder
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/helper_research_bench .venv/bin/python bench/research.py

What it fills, measures and prints: bench/README.md, "research.py".
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone as dt_timezone
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file: `bench` and the project importable

from bench import common  # noqa: E402
from bench.common import log  # noqa: E402

BASE = {"contexts": common.MM_SCALE_CONTEXTS, "scenarios": common.MM_SCALE_SCENARIOS, "annotators": 800}
INITIAL_PER_SCENARIO = 2.81  # with ~7% reconfirmed: ~97,000 judgment rows at 1x
RECONFIRM_RATE = 0.07
TARGET_SECONDS = 2.0
DAYS = 30


def setup_environment(db_url: str | None, tmp: Path) -> str:
    """The throw-away settings, in this process's environment (the bench runs in-process)."""
    if db_url is None:
        db_url = common.sqlite_url(tmp)
    os.environ.update(common.bench_env(database_url=db_url, folder=tmp, ALLOWED_HOSTS="testserver,localhost"))
    (tmp / "var").mkdir(parents=True, exist_ok=True)
    return db_url


# --- fill ---------------------------------------------------------------------------------------
def fill(scale: int, seed: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.core.management.color import no_style
    from django.db import connection, transaction

    from annotation.models import Annotator, Assignment, Context, ImportBatch, Judgment, Scenario
    from modelloop.models import ModelVersion
    from training.models import TrainingRun

    rng = random.Random(seed)
    n_ctx, n_scn, n_ann = BASE["contexts"] * scale, BASE["scenarios"] * scale, BASE["annotators"] * scale
    start = datetime.now(dt_timezone.utc).replace(hour=8, minute=0, second=0, microsecond=0) - timedelta(days=DAYS)
    User = get_user_model()

    users = [User(id=i, username=f"bench-research-{i}", password="!") for i in range(1, n_ann + 1)]
    kinds = rng.choices(
        ["normal", "random", "constant", "straight", "fast", "canary_fail"], [88, 3, 1, 1, 5, 2], k=n_ann
    )
    statuses = ["screened_out" if r < 0.02 else "paused" if r < 0.03 else "active" for r in (rng.random() for _ in range(n_ann))]
    annotators = [
        Annotator(id=i, user_id=i, consent_version="2026-11-v1", consented_at=start, status=statuses[i - 1])
        for i in range(1, n_ann + 1)
    ]
    batches = [
        ImportBatch(id=b, file_name=f"normbank-part-{b}.jsonl", file_sha256=f"{b:064x}", format="jsonl", status="done")
        for b in range(1, 11)
    ]
    contexts = [
        Context(id=i, image="contexts/bench.png", image_sha256="0" * 64, setting=f"synthetic setting {i}",
                import_batch_id=None if rng.random() < 0.1 else rng.randint(1, 10))
        for i in range(1, n_ctx + 1)
    ]
    per_context = common.scenarios_per_context(rng, n_ctx, n_scn)
    scenarios, truth, true_modality, sid = [], {}, {}, 0
    by_context: dict[int, list[int]] = {}
    for c, k in enumerate(per_context, start=1):
        for j in range(k):
            sid += 1
            label = rng.choice([-1, 0, 1]) if rng.random() < 0.9 else None
            base = {-1: 2, 0: 3, 1: 4, None: 3}[label]
            truth[sid] = min(5, max(1, base + rng.choice([-2, -1, -1, 0, 0, 0, 1, 1, 2])))
            true_modality[sid] = rng.choices([0, 1, 2], [21, 51, 28])[0]
            scenarios.append(Scenario(id=sid, context_id=c, text=f"synthetic action {j} number {sid}", text_only_label=label))
            by_context.setdefault(c, []).append(sid)
    canary_ids = []
    for c in range(1, n_ctx + 1, 30):
        sid += 1
        scenarios.append(Scenario(id=sid, context_id=c, text=f"canary {sid}", is_canary=True, canary_min_score=1, canary_max_score=2))
        canary_ids.append(sid)

    baseline = ModelVersion.objects.get(is_current=True)
    versions = [baseline]
    for v in range(1, 4):
        versions.append(
            ModelVersion.objects.create(
                name=f"bench-head-v{v}", scorer="efficientnet-minilm-mlp",
                metrics={"test": {"ndcg@5": 0.70 + 0.04 * v, "mrr": 0.80 + 0.03 * v, "kendall_tau_b": 0.30 + 0.06 * v,
                                  "unsafe_rate_pooled": 0.20 - 0.03 * v, "auc_safety_pooled": 0.80 + 0.03 * v, "ece": 0.1}},
            )
        )
    modalities = ["text", "image", "both"]
    assignments, judgments, judgment_count = [], [], {}
    page_id = jid = 0
    day_of_context = {c: (c - 1) * DAYS // n_ctx for c in range(1, n_ctx + 1)}
    p_three = INITIAL_PER_SCENARIO - 2

    def rater_score(kind, mu, page_fixed):
        if kind == "random":
            return rng.randint(1, 5)
        if kind == "constant":
            return 4
        if kind == "straight":
            return page_fixed
        return min(5, max(1, mu + rng.choice([-1, 0, 0, 0, 0, 1])))

    for c in range(1, n_ctx + 1):
        day = day_of_context[c]
        version = versions[min(3, day * 4 // DAYS)]
        raters = rng.sample(range(1, n_ann + 1), 3)
        sids = by_context[c]
        dropped = {s: rng.randrange(3) for s in sids if rng.random() >= p_three}  # scenario rated by 2
        for r_index, a in enumerate(raters):
            kind = kinds[a - 1]
            page_id += 1
            created = start + timedelta(days=day, seconds=rng.randint(0, 36000))
            assignments.append(Assignment(id=page_id, annotator_id=a, context_id=c, status="completed",
                                          expires_at=created, submitted_at=created, completed_at=created))
            page_fixed = rng.randint(1, 5)
            seconds = rng.uniform(0.5, 1.8) if kind == "fast" else rng.lognormvariate(2.1, 0.5)
            for s in sids:
                if dropped.get(s) == r_index:
                    continue
                score = rater_score(kind, truth[s], page_fixed)
                modality = true_modality[s] if rng.random() < 0.7 else rng.randrange(3)
                model = min(5.0, max(1.0, truth[s] + rng.gauss(0, 0.9)))
                jid += 1
                initial = Judgment(id=jid, annotator_id=a, scenario_id=s, assignment_id=page_id, score=score,
                                   modality=modalities[modality], model_version_id=version.pk, model_score=model,
                                   delta=abs(score - model), seconds_spent=seconds, client_token=uuid.uuid4())
                judgments.append((created, initial))
                judgment_count[s] = judgment_count.get(s, 0) + 1
                if initial.delta >= 1.0 and rng.random() < RECONFIRM_RATE / 0.45:
                    jid += 1
                    new = score if rng.random() < 0.93 else min(5, max(1, score + rng.choice([-1, 1])))
                    new_modality = modality if rng.random() < 0.9 else rng.randrange(3)
                    judgments.append((created + timedelta(seconds=30), Judgment(
                        id=jid, annotator_id=a, scenario_id=s, assignment_id=page_id, score=new,
                        modality=modalities[new_modality], phase="reconfirmed", revises_id=jid - 1,
                        model_version_id=version.pk, model_score=model, delta=abs(new - model),
                        seconds_spent=seconds, client_token=uuid.uuid4())))
    # ~10 canary answers per annotator, one page each
    for a in range(1, n_ann + 1):
        kind = kinds[a - 1]
        for canary in rng.sample(canary_ids, min(10, len(canary_ids))):
            context_id = scenarios[canary - 1].context_id
            day = rng.randrange(DAYS)
            created = start + timedelta(days=day, seconds=rng.randint(0, 36000))
            page_id += 1
            assignments.append(Assignment(id=page_id, annotator_id=a, context_id=context_id, status="completed",
                                          expires_at=created, submitted_at=created, completed_at=created))
            passed = rng.random() < (0.5 if kind == "canary_fail" else 0.995)
            score = rng.choice([1, 2]) if passed else rng.choice([3, 4, 5])
            jid += 1
            judgments.append((created, Judgment(id=jid, annotator_id=a, scenario_id=canary, assignment_id=page_id,
                                                score=score, modality="text", canary_passed=passed,
                                                seconds_spent=rng.lognormvariate(2.1, 0.5), client_token=uuid.uuid4())))
    for s in scenarios:
        if not s.is_canary:
            s.judgment_count = judgment_count.get(s.id, 0)
    for c in contexts:
        c.judgment_count = sum(judgment_count.get(s, 0) for s in by_context[c.id])

    with transaction.atomic():
        User.objects.bulk_create(users, batch_size=2000)
        Annotator.objects.bulk_create(annotators, batch_size=2000)
        ImportBatch.objects.bulk_create(batches)
        Context.objects.bulk_create(contexts, batch_size=2000)
        Scenario.objects.bulk_create(scenarios, batch_size=2000)
        Assignment.objects.bulk_create(assignments, batch_size=2000)
        by_day: dict = {}
        for created, j in judgments:
            by_day.setdefault(created.date(), []).append((created, j))
        for day, rows in sorted(by_day.items()):
            # created_at is auto_now_add: pin "now" to the day's judgments, in order.
            rows.sort(key=lambda r: r[1].id)
            moment = rows[0][0]
            with mock.patch("django.utils.timezone.now", return_value=moment):
                Judgment.objects.bulk_create([j for _, j in rows], batch_size=2000)
        for v, version in enumerate(versions[1:], start=1):
            TrainingRun.objects.create(status="succeeded", model_version=version, progress=1.0,
                                       metrics={"test": version.metrics["test"]})
    with connection.cursor() as cur:
        for sql in connection.ops.sequence_reset_sql(no_style(), [User, Annotator, Context, Scenario, Assignment, Judgment, ImportBatch]):
            cur.execute(sql)
        cur.execute("ANALYZE")
    reconfirmed = sum(1 for _, j in judgments if j.phase == "reconfirmed")
    return {
        "contexts": n_ctx, "scenarios": sum(1 for s in scenarios if not s.is_canary), "canaries": len(canary_ids),
        "judgments": len(judgments), "reconfirmed": reconfirmed, "annotators": n_ann,
    }


# --- measure --------------------------------------------------------------------------------------
def timed(fn, repeat: int):
    """Wall and CPU seconds of `repeat` calls; the result of the first call."""
    times, cpu, results = [], [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        results.append(fn())
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"first": times[0], "best": min(times), "median": statistics.median(times), "cpu": statistics.median(cpu)}, results[0]


def measure(repeat: int, html_path: str | None) -> dict:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    from annotation.dataset import table
    from annotation.research import dashboard
    from annotation.research import items as research_items
    from annotation.research import quality
    from morale.roles import researcher_make

    out = {}
    out["quality_refresh"], refreshed = timed(quality.quality_refresh, repeat)
    out["annotator_stats"], _ = timed(quality.annotator_stats, repeat)
    out["flagged_items"], items = timed(lambda: research_items.flagged_items(limit=200), repeat)
    out["load_rows"], rows = timed(table.load_rows, repeat)
    out["judgment_table"], table = timed(lambda: table.judgment_table(rows=rows), repeat)
    for name in ("krippendorff_alphas", "modality_agreement", "rating_distribution", "judgment_shifts", "item_dispersion"):
        fn = getattr(analysis, name)
        out[name], _ = timed(lambda fn=fn: fn(table), repeat)
    for name in ("revision_rates", "disagreement_rates", "collection_progress"):
        fn = getattr(analysis, name)
        out[name], _ = timed(lambda fn=fn: fn(rows=rows), repeat)
    for name in ("model_metrics", "annotator_quality_summary"):
        out[name], _ = timed(getattr(analysis, name), repeat)
    out["dashboard_bundle"], bundle = timed(lambda: dashboard.dashboard_bundle(use_cache=False), repeat)

    researcher = get_user_model().objects.create_user(username="bench-researcher", password="bench-only-pw-1")
    researcher_make(researcher)
    client = Client()
    client.force_login(researcher)
    url = reverse("annotation:dashboard")

    def page(path):
        response = client.get(path)
        assert response.status_code == 200, response.status_code
        return response

    out["page_recompute"], response = timed(lambda: page(url + "?refresh=1"), repeat)
    out["page_cached"], _ = timed(lambda: page(url), repeat)
    out["quality_page"], _ = timed(lambda: page(reverse("annotation:quality")), repeat)
    if html_path:
        Path(html_path).write_bytes(response.content)
        log(f"dashboard HTML written to {html_path}")
    figures = {
        "alpha_overall": bundle["alpha"]["overall"],
        "modality_agreement": {m: v["share"] for m, v in bundle["modality_agreement"]["by_modality"].items()},
        "revision_rate": bundle["revisions"]["overall"]["rate"],
        "disagreement_rate": bundle["disagreement"]["overall"]["rate"],
        "high_variance_share": items["share"],
        "flagged_annotators": refreshed["flagged"],
        "auto_paused": len(refreshed["paused"]),
        "table_rows": table.n_judgments,
    }
    return {"times": out, "figures": figures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db-url", default=os.environ.get("DATABASE_URL"), help="default: SQLite in a temporary folder")
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--html", help="save the rendered dashboard page here")
    parser.add_argument("--keep", action="store_true", help="keep the database and the temporary folder")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="morale-bench-research-"))
    db_url = setup_environment(args.db_url, tmp)
    postgres = db_url.startswith("postgres")
    try:
        if postgres:
            common.pg_recreate(common.pg_url_for(db_url, "postgres"), common.pg_db_name(db_url))
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        t = time.perf_counter()
        call_command("migrate", "--noinput", verbosity=0, stdout=io.StringIO())
        log(f"migrated {connection.vendor} in {time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        filled = fill(args.scale, args.seed)
        log(f"filled in {time.perf_counter() - t:.1f}s: {filled}")
        result = measure(args.repeat, args.html)
    except Exception as exc:  # noqa: BLE001 - a bench reports and exits
        log(f"could not run: {exc!r}")
        raise
    finally:
        if args.keep:
            log(f"kept {db_url} and {tmp}")
        else:
            from django.db import connections

            connections.close_all()
            if postgres:
                common.pg_drop(common.pg_url_for(db_url, "postgres"), common.pg_db_name(db_url))
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nMORALE research bench: {connection.vendor}, scale {args.scale}x, {filled['contexts']:,} contexts, "
          f"{filled['scenarios']:,} scenarios (+{filled['canaries']} canaries), {filled['judgments']:,} judgments "
          f"({filled['reconfirmed']:,} reconfirmed), {filled['annotators']:,} annotators; load {os.getloadavg()[0]:.2f}")
    print(f"{'step':28} {'first s':>9} {'best s':>9} {'median s':>9} {'CPU s':>9}")
    for name, t in result["times"].items():
        print(f"{name:28} {t['first']:9.3f} {t['best']:9.3f} {t['median']:9.3f} {t['cpu']:9.3f}")
    print("(CPU s: this process's CPU time, median; on SQLite it includes the database's work, on PostgreSQL not)")
    print("figures:", json.dumps(result["figures"], default=float))
    for name in ("dashboard_bundle", "page_recompute"):
        t = result["times"][name]["median"]
        print(f"target {name} < {TARGET_SECONDS:g} s: {common.verdict(t < TARGET_SECONDS)} ({t:.3f} s median)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except Exception:  # noqa: BLE001
        sys.exit(2)

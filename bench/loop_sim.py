"""The learning loop, simulated: a synthetic crowd works through the real services while the
model retrains on what it says; draws judgments collected vs held-out quality (issue 13).

    .venv/bin/python bench/loop_sim.py                       # the demo data, 3 seeds x 2 routings
    .venv/bin/python bench/loop_sim.py --truth my.jsonl --seeds 5 --retrain-after 100

Each run (one routing, one seed) starts from a fresh private SQLite database with the
image-aware prior current and goes through the real code paths: contexts and scenarios
are created by ``annotation.services`` (the prior scores them), synthetic raters ask for
pages (``assignment_get_or_create``, under ``MORALE_ROUTING``), submit them
(``assignment_submit_ratings``: model score and delta stored), answer their grounding checks
(``judgments_reconfirm``) and close them; after every page the retrain trigger
(``training.trigger.retrain_if_due``, threshold ``--retrain-after``) may queue a head-only run,
which runs at once (``training_run_execute``: export, cached features, training, the gate,
promotion and rescoring of every scenario). Celery tasks run inline (eager).

The ground truth is a CSV or JSONL file with one row per scenario: ``context`` (any key
naming the image + setting), ``image`` (a path, relative to the file's folder or absolute),
``setting``, ``scenario``, ``true_mean`` (1-5) and optionally ``true_modality``
(text/image/both). Without ``--truth`` the demo data is used (``demo_truth``). A share of
contexts (``--holdout``, the same for every run) is never shown to the crowd: the held-out
figures are the current version's scores on them against ``true_mean``: NDCG@5 (per
context, averaged), MAE, and the *disagreement rate* (the share of the crowd's judgments in
each window whose delta to the model reached MORALE_DISAGREEMENT_THRESHOLD, i.e. that got a
grounding check).

The crowd: ``--raters`` raters, a share ``--careless`` of them careless (uniform random
scores, keep them at a check); the others answer round(true_mean + N(0, ``--noise``)),
clipped to 1-5, and at a check answer again with half the noise.

Writes ``bench/results/loop_sim-<time>.csv`` (every point of every run), ``.png`` (the
curves: mean over seeds, band = min-max) and ``.json`` (the summary); prints, per routing,
how many judgments the first promoted head needed to beat the prior's held-out NDCG@5.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402

DEMO_TRUE_MEAN = {1: 4.5, 0: 3.5, -1: 1.5, None: 2.5}  # demo text_only_label -> true mean
SANITY_TRUE_MEAN = {"better": 4.3, "worse": 1.4}  # tests/data/prior_sanity.jsonl items


@dataclass(frozen=True)
class TruthRow:
    context: str
    image: str
    setting: str
    scenario: str
    true_mean: float
    true_modality: str = ""


def read_truth(path: Path) -> list[TruthRow]:
    """Rows of a CSV or JSONL ground-truth file (ValueError, with the line, for a bad row)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        records = list(csv.DictReader(text.splitlines()))
    elif path.suffix.lower() in (".jsonl", ".json"):
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        raise ValueError(f"{path}: the ground truth must be a .csv or .jsonl file")
    rows = []
    for n, r in enumerate(records, start=1):
        missing = [k for k in ("context", "image", "setting", "scenario", "true_mean") if not str(r.get(k) or "").strip()]
        if missing:
            raise ValueError(f"{path} row {n}: missing {', '.join(missing)}")
        try:
            mean = float(r["true_mean"])
        except (TypeError, ValueError):
            raise ValueError(f"{path} row {n}: true_mean must be a number, not {r['true_mean']!r}") from None
        if not 1 <= mean <= 5:
            raise ValueError(f"{path} row {n}: true_mean must be within 1-5, not {mean}")
        modality = str(r.get("true_modality") or "").strip()
        if modality not in ("", "text", "image", "both"):
            raise ValueError(f"{path} row {n}: true_modality must be text, image or both, not {modality!r}")
        image = Path(str(r["image"]))
        image = image if image.is_absolute() else (path.parent / image)
        if not image.is_file():
            raise ValueError(f"{path} row {n}: image file not found: {image}")
        rows.append(TruthRow(str(r["context"]), str(image), str(r["setting"]), str(r["scenario"]), mean, modality))
    if len({r.context for r in rows}) < 3:
        raise ValueError(f"{path}: at least 3 contexts are needed (one to hold out, two to train on)")
    return rows


def demo_truth(folder: Path) -> Path:
    """The demo data as a ground-truth file in `folder`: the demo contexts' scenarios (true
    mean from their text-only label: good 4.5, neutral 3.5, bad 1.5, depends on the image
    2.5; canaries: the middle of their range) and the prior sanity set's scenarios for the
    same images (better 4.3, worse 1.4). A plausible crowd for the demo, not measured ratings."""
    from annotation.demo.content import DEMO_CONTEXTS

    folder.mkdir(parents=True, exist_ok=True)
    rows, seen = [], set()
    for c in DEMO_CONTEXTS:
        image = folder / f"{c.slug}.png"
        image.write_bytes(c.png_bytes())
        for s in c.scenarios:
            mean = sum(s.canary_range) / 2 if s.canary_range else DEMO_TRUE_MEAN[s.text_only_label]
            rows.append({"context": c.slug, "image": image.name, "setting": c.setting, "scenario": s.text, "true_mean": mean})
            seen.add((c.slug, s.text))
    settings_of = {c.slug: c.setting for c in DEMO_CONTEXTS}
    for line in (ROOT / "tests" / "data" / "prior_sanity.jsonl").read_text().splitlines():
        item = json.loads(line)
        for side, mean in SANITY_TRUE_MEAN.items():
            if (item["image"], item[side]) not in seen:
                seen.add((item["image"], item[side]))
                rows.append({"context": item["image"], "image": f"{item['image']}.png", "setting": settings_of[item["image"]],
                             "scenario": item[side], "true_mean": mean})
    path = folder / "demo_truth.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def setup_django(folder: Path, *, retrain_after: int) -> None:
    env = common.bench_env(
        database_url=common.sqlite_url(folder),
        folder=folder,
        CELERY_TASK_ALWAYS_EAGER="true",
        MORALE_CANARY_RATE="0",
        MORALE_EXPORT_TEST_FRACTION="0.3",
        MORALE_RETRAIN_AFTER_JUDGMENTS=str(retrain_after),
        MORALE_MAX_UNTOUCHED_PARTICIPANTS="0",
        MORALE_DASHBOARD_CACHE_SECONDS="0",
    )
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)


def fresh_database() -> None:
    """Empty every table and put back the current version a fresh deployment has."""
    from django.core.management import call_command

    from modelloop import services as modelloop_services
    from modelloop.baseline import ensure_current_version
    from modelloop.models import ModelVersion

    call_command("flush", "--noinput", verbosity=0)
    modelloop_services.scorer_cache_clear()
    ensure_current_version(ModelVersion)


def held_out_figures(held_out: list[TruthRow]) -> tuple[float, float]:
    """(NDCG@5 averaged over held-out contexts, MAE) of the current version against the truth."""
    import numpy as np

    from modelloop import selectors as modelloop_selectors
    from modelloop import services as modelloop_services
    from modelloop.scoring import ScoringInput
    from training.metrics import ndcg_at_k

    scorer = modelloop_services.scorer_for(modelloop_selectors.model_version_current())
    results = scorer.score([ScoringInput(-(i + 1), r.image, r.setting, r.scenario) for i, r in enumerate(held_out)])
    if not all(r.ok for r in results):
        raise RuntimeError(f"held-out scoring failed: {[r.error for r in results if not r.ok][:3]}")
    pred = np.array([r.score for r in results])
    true = np.array([r.true_mean for r in held_out])
    by_context: dict[str, list[int]] = {}
    for i, r in enumerate(held_out):
        by_context.setdefault(r.context, []).append(i)
    ndcg = float(np.mean([ndcg_at_k(true[ix], pred[ix], 5) for ix in by_context.values()]))
    return ndcg, float(np.mean(np.abs(pred - true)))


def one_run(*, rows: list[TruthRow], held: set[str], routing: str, seed: int, args) -> list[dict]:
    """One simulated collection; returns its curve points."""
    from django.conf import settings
    from django.core.files.base import ContentFile

    from annotation import services
    from annotation.models import Annotator, Judgment
    from modelloop import selectors as modelloop_selectors
    from training import services as training_services
    from training import trigger
    from training.models import TrainingRun

    fresh_database()
    settings.MORALE_ROUTING = routing
    rng = random.Random(seed)
    truth: dict[int, TruthRow] = {}
    contexts = {}
    # Created with the scoring tasks sent to the (unconsumed) broker, then scored in one batch:
    # one eager task per scenario would load and run the prior once per scenario.
    from celery import current_app

    from modelloop import services as modelloop_services

    current_app.conf.task_always_eager = False
    for r in rows:
        if r.context in held:
            continue
        if r.context not in contexts:
            contexts[r.context] = services.context_create(
                image_file=ContentFile(Path(r.image).read_bytes(), name=Path(r.image).name), setting=r.setting
            )
        truth[services.scenario_create(context=contexts[r.context], text=r.scenario).pk] = r
    current_app.conf.task_always_eager = True
    modelloop_services.scenarios_score(scenario_ids=sorted(truth), model_version=modelloop_selectors.model_version_current())
    held_out = [r for r in rows if r.context in held]
    common.log(f"  [{routing} seed {seed}] {len(truth)} scenarios created and scored by the prior", stamp="")
    raters = []
    for n in range(args.raters):
        annotator = services.annotator_create(username=f"sim-rater-{n}", password=uuid.uuid4().hex)
        raters.append(services.annotator_record_consent(annotator=annotator, version=settings.MORALE_CONSENT_VERSION))
    careless = {a.pk for a in rng.sample(raters, round(args.careless * len(raters)))}
    threshold = settings.MORALE_DISAGREEMENT_THRESHOLD
    config = json.loads(args.train_config)

    def rate(annotator, row: TruthRow, noise: float) -> int:
        if annotator.pk in careless:
            return rng.randint(1, 5)
        return min(5, max(1, round(row.true_mean + rng.gauss(0, noise))))

    def modality(row: TruthRow) -> str:
        return row.true_modality or rng.choice(["text", "image", "both"])

    points, collected, window_checked, window_all = [], 0, 0, 0
    prior_name = modelloop_selectors.model_version_current().name

    def record(version_name: str) -> None:
        nonlocal window_checked, window_all
        ndcg, mae = held_out_figures(held_out)
        points.append({
            "routing": routing, "seed": seed, "judgments": collected, "version": version_name,
            "trained": version_name != prior_name, "ndcg@5": round(ndcg, 4), "mae": round(mae, 4),
            "disagreement_rate": round(window_checked / window_all, 4) if window_all else "",
        })
        window_checked = window_all = 0

    record(prior_name)
    next_point = args.every
    idle = 0
    while idle < len(raters):
        annotator = rng.choice(raters)
        page = services.assignment_get_or_create(annotator=annotator, rng=rng)
        if page is None:
            idle += 1
            continue
        idle = 0
        items = list(page.items.all())
        ratings = [services.RatingInput(i.scenario_id, rate(annotator, truth[i.scenario_id], args.noise),
                                        modality(truth[i.scenario_id])) for i in items]
        stored = services.assignment_submit_ratings(
            annotator=annotator, assignment_id=page.pk, ratings=ratings, page_token=uuid.uuid4()
        )
        checks = [j for j in stored if j.delta is not None and j.delta >= threshold]
        if checks:
            answers = [
                services.CheckAnswer(
                    judgment_id=j.pk,
                    score=j.score if annotator.pk in careless else rate(annotator, truth[j.scenario_id], args.noise / 2),
                    modality=j.modality, model_score=j.model_score, model_version_id=j.model_version_id,
                )
                for j in checks
            ]
            services.judgments_reconfirm(annotator=annotator, answers=answers, page_token=uuid.uuid4())
        services.assignment_complete(annotator=annotator, assignment_id=page.pk)
        collected += len(stored)
        window_all += sum(1 for j in stored if j.delta is not None)
        window_checked += len(checks)
        run = trigger.retrain_if_due(config=config)
        if run is not None:
            t_run = time.perf_counter()
            run = training_services.training_run_execute(run_id=run.pk)
            common.log(f"  [{routing} seed {seed}] {collected} judgments: run #{run.pk} {run.status}, "
                       f"promoted {run.promoted} ({time.perf_counter() - t_run:.0f}s)", stamp="")
            if run.status == TrainingRun.Status.FAILED:
                common.log(f"  [{routing} seed {seed}] training run #{run.pk} failed: {run.error[:200]}")
        if collected >= next_point:
            record(modelloop_selectors.model_version_current().name)
            while next_point <= collected:
                next_point += args.every
    if points[-1]["judgments"] != collected:
        record(modelloop_selectors.model_version_current().name)
    runs = TrainingRun.objects.count()
    promoted = TrainingRun.objects.filter(promoted=True).count()
    judged = Judgment.objects.filter(phase=Judgment.Phase.INITIAL).count()
    common.log(f"  [{routing} seed {seed}] {judged} judgments, {runs} training runs ({promoted} promoted), "
               f"final held-out NDCG@5 {points[-1]['ndcg@5']:.3f} MAE {points[-1]['mae']:.3f}")
    assert Annotator.objects.count() == len(raters)
    return points


def beats_prior_at(points: list[dict]) -> int | None:
    """Judgments collected when a trained version first beat the prior's held-out NDCG@5 (None: never)."""
    prior = points[0]["ndcg@5"]
    for p in points:
        if p["trained"] and p["ndcg@5"] > prior:
            return p["judgments"]
    return None


def summarise(all_points: list[dict], routings: list[str]) -> dict:
    import statistics as st

    summary = {}
    for routing in routings:
        by_seed: dict[int, list[dict]] = {}
        for p in all_points:
            if p["routing"] == routing:
                by_seed.setdefault(p["seed"], []).append(p)
        beats = {seed: beats_prior_at(pts) for seed, pts in by_seed.items()}
        finals = [pts[-1] for pts in by_seed.values()]
        rates = [p["disagreement_rate"] for pts in by_seed.values() for p in pts if p["disagreement_rate"] != ""]

        def spread(values):
            values = [v for v in values if v is not None]
            if not values:
                return None
            return {"mean": round(st.mean(values), 4), "sd": round(st.stdev(values), 4) if len(values) > 1 else 0.0,
                    "min": min(values), "max": max(values), "n": len(values)}

        summary[routing] = {
            "judgments_to_beat_prior": beats,
            "judgments_to_beat_prior_stats": spread(list(beats.values())),
            "never_beat_prior": sum(1 for v in beats.values() if v is None),
            "prior_ndcg@5": spread([pts[0]["ndcg@5"] for pts in by_seed.values()]),
            "prior_mae": spread([pts[0]["mae"] for pts in by_seed.values()]),
            "final_ndcg@5": spread([p["ndcg@5"] for p in finals]),
            "final_mae": spread([p["mae"] for p in finals]),
            "mean_disagreement_rate": spread(rates),
        }
    return summary


def plot(all_points: list[dict], routings: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = [("ndcg@5", "held-out NDCG@5 (higher is better)"), ("mae", "held-out MAE (lower is better)"),
               ("disagreement_rate", "disagreement rate (share of judgments checked)")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for routing, colour in zip(routings, ["tab:blue", "tab:orange"]):
        pts = [p for p in all_points if p["routing"] == routing]
        xs = sorted({p["judgments"] for p in pts})
        seeds = sorted({p["seed"] for p in pts})
        for ax, (key, label) in zip(axes, metrics):
            grid = np.full((len(seeds), len(xs)), np.nan)
            for p in pts:
                if p[key] != "":
                    grid[seeds.index(p["seed"]), xs.index(p["judgments"])] = p[key]
            # carry a seed's last value forward where it stopped earlier (its collection was done)
            for row in grid:
                for j in range(1, len(row)):
                    if math.isnan(row[j]) and not math.isnan(row[j - 1]):
                        row[j] = row[j - 1]
            with np.errstate(all="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean, low, high = np.nanmean(grid, 0), np.nanmin(grid, 0), np.nanmax(grid, 0)
            ax.plot(xs, mean, color=colour, label=f"{routing} (mean of {len(seeds)} seeds)")
            ax.fill_between(xs, low, high, color=colour, alpha=0.2)
            ax.set_xlabel("judgments collected")
            ax.set_title(label, fontsize=10)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--truth", type=Path, help="ground-truth CSV or JSONL (default: the demo data)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--routing", nargs="+", default=["random", "disagreement"], choices=["random", "disagreement"])
    parser.add_argument("--raters", type=int, default=12)
    parser.add_argument("--careless", type=float, default=0.2, help="share of careless raters (0-1)")
    parser.add_argument("--noise", type=float, default=0.7, help="sd of a careful rater's noise, in score points")
    parser.add_argument("--holdout", type=float, default=0.3, help="share of contexts held out (0-1)")
    parser.add_argument("--retrain-after", type=int, default=24, help="the retrain trigger's N")
    parser.add_argument("--every", type=int, default=12, help="judgments between curve points")
    parser.add_argument("--train-config", default='{"epochs": 30, "lr": 0.003}', help="TrainConfig fields, JSON")
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.raters < 3 or not 0 <= args.careless <= 1 or args.noise < 0 or not 0 < args.holdout < 1:
        parser.error("need --seeds >= 1, --raters >= 3, --careless and --holdout within 0-1, --noise >= 0")
    if args.retrain_after < 1 or args.every < 1:
        parser.error("--retrain-after and --every must be >= 1")
    try:
        json.loads(args.train_config)
    except ValueError as exc:
        parser.error(f"--train-config is not JSON: {exc}")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="morale-loop-sim-") as tmp:
        folder = Path(tmp)
        setup_django(folder, retrain_after=args.retrain_after)
        truth_path = args.truth or demo_truth(folder / "demo")
        rows = read_truth(truth_path)
        names = sorted({r.context for r in rows})
        held = set(random.Random(0).sample(names, max(1, round(args.holdout * len(names)))))
        common.log(f"loop_sim: {len(rows)} scenarios in {len(names)} contexts from {truth_path.name}, "
                   f"{len(held)} contexts held out; load {common.loadavg(3)}", stamp="")
        all_points = []
        for routing in args.routing:
            for seed in range(args.seeds):
                t = time.perf_counter()
                all_points += one_run(rows=rows, held=held, routing=routing, seed=seed, args=args)
                common.log(f"  [{routing} seed {seed}] {time.perf_counter() - t:.0f}s", stamp="")
    summary = summarise(all_points, args.routing)
    elapsed = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"loop_sim-{time.strftime('%Y%m%d-%H%M%S')}"
    with open(f"{stem}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(all_points[0]))
        writer.writeheader()
        writer.writerows(all_points)
    title = (f"{truth_path.name}: {len(rows)} scenarios, {len(held)}/{len(names)} contexts held out, {args.raters} raters "
             f"({args.careless:.0%} careless, noise {args.noise}), retrain after {args.retrain_after}; band = min-max of "
             f"{args.seeds} seeds")
    plot(all_points, args.routing, Path(f"{stem}.png"), title)
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "truth": str(truth_path), "scenarios": len(rows),
              "contexts": len(names), "held_out": sorted(held), "seconds": round(elapsed, 1),
              "load_average": common.loadavg(3), "summary": summary}
    Path(f"{stem}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"wrote {stem}.csv, {stem}.png, {stem}.json in {elapsed:.0f}s (load average {common.loadavg(3)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

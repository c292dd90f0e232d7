"""Probe benchmark: the robustness probe's throughput per scorer and its cost against a plain rescore.

    .venv/bin/python bench/probe.py                  # demo data, baseline + a trained head
    .venv/bin/python bench/probe.py --suite full     # every corruption at severities 1-5

In a throw-away SQLite database and media folder: loads the demo data (``seed_demo``),
judges it with simulated annotators (``judge_demo``: scores follow the demo scenarios'
text-only labels, image-dependent ones get image/both labels), exports it, trains a head
(``train_head``), and probes the baseline and the head on every context (``--split all``:
the demo's test split is one or two contexts). Prints the probe table of each version and
pairs/s per scorer: ``probe`` = scored (pair, condition)s per second, ``rescore`` = clean
pairs per second through the same scorer, and the probe's wall time over one plain rescore.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def judge_demo(*, annotators: int = 3, seed: int = 0) -> int:
    """Judge every demo scenario ``annotators`` times through the annotation services; returns
    the number of judgments. Text-labelled scenarios (NormBank +1 / 0 / -1) get 4-5 / 3 / 1-2
    and modality mostly ``text``; image-dependent ones (no label) a per-scenario score and
    ``image`` or ``both``. Canaries get their gold range."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from annotation import services
    from annotation.demo.content import DEMO_CONTEXTS
    from annotation.models import Annotator, InstructionsVersion, OnboardingRecord, PracticeRound

    rng = random.Random(seed)
    by_text = {s.text: s for demo in DEMO_CONTEXTS for s in demo.scenarios}
    truth = {text: rng.randint(1, 5) for text in by_text}
    made = 0
    for a in range(annotators):
        user = get_user_model().objects.create(username=f"probe-judge-{seed}-{a}-{uuid.uuid4().hex[:6]}")
        annotator = Annotator.objects.create(
            user=user, consent_version=settings.MORALE_CONSENT_VERSION, consented_at=timezone.now()
        )
        done = [(OnboardingRecord.Step.INSTRUCTIONS, v) for v in InstructionsVersion.objects.values_list("version", flat=True)]
        done += [(OnboardingRecord.Step.PRACTICE, v) for v in PracticeRound.objects.values_list("version", flat=True)]
        OnboardingRecord.objects.bulk_create(
            [OnboardingRecord(annotator=annotator, step=s, version=v) for s, v in done], ignore_conflicts=True
        )
        while (page := services.assignment_get_or_create(annotator=annotator)) is not None:
            ratings = []
            for item in page.items.select_related("scenario"):
                demo = by_text.get(item.scenario.text)
                label = demo.text_only_label if demo else None
                if demo is not None and demo.canary_range:
                    score, modality = rng.randint(*demo.canary_range), "text"
                elif label is None:
                    score = min(5, max(1, truth[item.scenario.text] + rng.choice([-1, 0, 0, 1])))
                    modality = rng.choice(["image", "both", "both"])
                else:
                    score = {1: rng.choice([4, 5]), 0: 3, -1: rng.choice([1, 2])}[label]
                    modality = "text" if rng.random() < 0.8 else "both"
                ratings.append(services.RatingInput(item.scenario_id, score, modality))
            services.assignment_submit_ratings(
                annotator=annotator, assignment_id=page.pk, ratings=ratings, page_token=uuid.uuid4()
            )
            services.assignment_complete(annotator=annotator, assignment_id=page.pk)
            made += len(ratings)
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=["pilot", "full"], default="pilot")
    parser.add_argument("--annotators", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="morale-bench-probe-"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "morale.settings.local"
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    os.environ["MORALE_VAR_DIR"] = str(tmp)
    os.environ["MEDIA_ROOT"] = str(tmp / "media")
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "false"
    os.environ["CELERY_BROKER_URL"] = f"filesystem://localhost/"
    import django

    django.setup()
    from django.core.management import call_command

    from bench import common
    from modelloop import selectors, services
    from modelloop.models import ModelVersion
    from training.models import ProbeRun
    from training.probes import report
    from training.probes.runner import conditions_for, probe_run_create, probe_run_execute

    started = time.monotonic()
    call_command("migrate", verbosity=0)
    call_command("seed_demo", verbosity=0)
    n = judge_demo(annotators=args.annotators)
    common.log(f"demo data judged: {n} judgments ({time.monotonic() - started:.1f} s)", stamp="bench")
    baseline = selectors.model_version_current()
    call_command("train_head", epochs=args.epochs, lr=3e-3, verbosity=0)
    head = ModelVersion.objects.filter(scorer="efficientnet-minilm-mlp").order_by("-id").first()
    rows = []
    for version, against in ((baseline, None), (head, baseline)):
        run = probe_run_create(model_version=version, against=against, suite=args.suite, split="all")
        t0 = time.monotonic()
        run = probe_run_execute(run_id=run.pk)
        probe_seconds = time.monotonic() - t0
        if run.status != ProbeRun.Status.SUCCEEDED:
            print(f"probe of {version.name} failed: {run.error}")
            return 1
        print(report.text_table(run))
        scored = run.n_pairs * len(conditions_for(args.suite)) * (2 if against else 1)
        from training.probes.runner import pairs_from_export, score_inputs

        pairs = pairs_from_export(run.export.file.path, split="all")
        inputs = [services.scoring_inputs_for(scenario_ids=[p.scenario_id])[0] for p in pairs]
        scorer = services.scorer_for(version)
        t1 = time.monotonic()
        score_inputs(version, scorer, inputs)
        rescore_seconds = time.monotonic() - t1
        rows.append((version.scorer, run.n_pairs, scored, probe_seconds, scored / probe_seconds,
                     len(pairs) / rescore_seconds, probe_seconds / rescore_seconds))
    common.print_title("probe throughput", f", load average {common.loadavg(3)}")
    common.print_header(f"{'scorer':<26} {'pairs':>6} {'scored':>7} {'probe s':>8} {'probe pairs/s':>14} {'rescore pairs/s':>16} {'cost x':>7}")
    for scorer, pairs_n, scored, secs, rate, rescore_rate, cost in rows:
        print(f"{scorer:<26} {pairs_n:>6} {scored:>7} {secs:>8.1f} {rate:>14.1f} {rescore_rate:>16.1f} {cost:>7.1f}")
    print("\nprobe pairs/s: (pair, condition)s scored per second, image corruption files made on first use included;"
          "\nthe head's probe also scores its reference (the baseline). cost x: probe wall time / one plain rescore.")
    common.save_results("probe", {"rows": rows, "suite": args.suite, "load": common.loadavg(3)})
    return 0


if __name__ == "__main__":
    sys.exit(main())

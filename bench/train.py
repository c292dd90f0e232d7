"""Training benchmark on synthetic data of the MM-SCALE size (issue #4).

    .venv/bin/python bench/train.py            # full size: 9,260 lists, 32,212 scenarios, 1664-d
    .venv/bin/python bench/train.py --quick    # a tenth of it, for a smoke run

Prints, from one run (``--skip timing,sanity,sweep,table`` leaves parts out):
- timing: head-only training at the paper's setting (one list per step: about 46,000
  optimiser steps, 5 epochs, AdamW lr 1e-4; target under 60 s on this CPU), per seed, with
  the test NDCG@5 and its spread over seeds;
- sanity: vectorised ListMLE against the per-list Python loop (same values), the loss at
  initialisation vs log(n!), overfitting one list;
- sweep: how the default mse_weight was chosen (NDCG@5 and MAE for w = 0, 0.1, 0.5, 2);
- tables, on synthetic lists from a known generator AND on lists that differ by per-list
  offsets (training/synthetic.py's offset_lists): ListMLE vs BPO vs BCE (each + MSE, and
  ListMLE / BPO alone) vs random scores by K-fold cross-validation, the mean with the fold
  spread, then each method's ranking metrics before and after calibration side by side.

Synthetic lists come from a known scoring function plus noise (training/synthetic.py), so
"recovers the ranking" is checkable: test NDCG@5 > 0.95.

    .venv/bin/python bench/train.py --mode lora                    # a tiny Qwen2-VL, built offline
    .venv/bin/python bench/train.py --mode lora --vlm-path /models/Qwen2-VL-2B-Instruct  # on a GPU

``--mode lora`` instead times LoRA training through the VLM (training/lora.py's
``train_lora``) on random images: training lists and scenarios per second, one epoch.
On the tiny model it measures the loop's overhead, not a real model's speed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "morale.settings.test")

import django  # noqa: E402

django.setup()

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from modelloop.testing.tiny_vlms import build_tiny_vlm
import numpy as np  # noqa: E402

from training import losses, metrics  # noqa: E402
from training.evaluation import cross_validation_splits, evaluate_methods, table  # noqa: E402
from training.lists import ImageList, ListData, TrainingDataError  # noqa: E402
from training.lora import train_lora  # noqa: E402
from training.synthetic import offset_lists, synthetic_lists  # noqa: E402
from training.train import TrainConfig, train_head  # noqa: E402

MM_SCALE_LISTS, MM_SCALE_SCENARIOS, FEATURE_DIM = 9_260, 32_212, 1_664


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tenth of the MM-SCALE size for the timing")
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--mode", choices=["head", "lora"], default="head")
    parser.add_argument("--vlm-path", help="--mode lora: a local VLM checkpoint (default: a tiny Qwen2-VL)")
    parser.add_argument("--lists", type=int, default=16, help="--mode lora: training lists of 4 scenarios")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: timing,sweep,table,sanity")
    parser.add_argument("--folds", type=int, default=5, help="folds of the comparison tables")
    parser.add_argument("--seeds", default="0", help="seeds of the comparison tables, e.g. 0,1")
    parser.add_argument("--timing-seeds", default="0,1", help="seeds of the paper-setting timing")
    parser.add_argument("--data", default="known,offsets", help="data sets of the sweep and tables: known,offsets")
    parser.add_argument("--table-lists", type=int, default=1500, help="lists of the sweep and the tables")
    args = parser.parse_args()
    if args.mode == "lora":
        bench_lora(args)
        return
    skip = set(filter(None, args.skip.split(",")))
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average {_load()}")
    if "timing" not in skip:
        bench_timing(args)
    if "sanity" not in skip:
        bench_sanity(args)
    if "sweep" not in skip:
        bench_mse_sweep(args)
    if "table" not in skip:
        bench_tables(args)
    print(f"\nload average at the end {_load()}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench_timing(args) -> None:
    """The paper's setting (issue 16 item 3): one list per step, AdamW lr 1e-4, 5 epochs, MM-SCALE size."""
    scale = 0.1 if args.quick else 1.0
    n_lists, n_items = int(MM_SCALE_LISTS * scale), int(MM_SCALE_SCENARIOS * scale)
    train = synthetic_lists(n_lists, dim=FEATURE_DIM, total_items=n_items, noise=args.noise, seed=0)
    test = synthetic_lists(max(200, n_lists // 9), dim=FEATURE_DIM, noise=args.noise, seed=1)
    print(f"\n== head-only training at the paper's setting: {n_lists} lists, {n_items} scenarios, {FEATURE_DIM}-d, "
          "ListMLE + MSE, 1 list per step, AdamW lr 1e-4, 5 epochs ==")
    ndcgs = []
    for seed in [int(s) for s in args.timing_seeds.split(",")]:
        started = time.perf_counter()
        result = train_head(TrainConfig(epochs=5, lr=1e-4, lists_per_step=1, seed=seed), train, test)
        seconds = time.perf_counter() - started
        steps = 5 * n_lists
        training = sum(row["seconds"] for row in result.history)
        ndcgs.append(result.test_metrics["ndcg@5"])
        print(f"seed {seed}: total {seconds:.1f} s (training {training:.1f} s, {training / steps * 1e3:.2f} ms/step) "
              f"{'PASS' if seconds < 60 * scale else 'MISS'} (< {60 * scale:.0f} s); test NDCG@5 "
              f"{result.test_metrics['ndcg@5']:.4f}, MAE {result.test_metrics['mae']:.4f}  [load {_load()}]")
    if len(ndcgs) > 1:
        print(f"NDCG@5 over seeds: {np.mean(ndcgs):.4f} ± {np.std(ndcgs, ddof=1):.4f}")


def bench_sanity(args) -> None:
    train = synthetic_lists(2048, dim=FEATURE_DIM, noise=args.noise, seed=0)
    test = synthetic_lists(200, dim=FEATURE_DIM, noise=args.noise, seed=1)
    # Vectorised ListMLE vs the per-list loop, on the same padded batch.
    index = train.padded_index()[:2048]
    mask = index >= 0
    scores = torch.randn(index.shape)
    targets = train.targets[index.clamp(min=0)]
    vec = _time(lambda: losses.listmle_loss(scores, targets, mask, torch.Generator().manual_seed(0)))
    ref = _time(lambda: losses.listmle_loss_reference(scores, targets, mask, torch.Generator().manual_seed(0)), repeat=3)
    same = torch.allclose(
        losses.listmle_loss(scores, targets, mask, torch.Generator().manual_seed(0)),
        losses.listmle_loss_reference(scores, targets, mask, torch.Generator().manual_seed(0)),
    )
    print(f"\n== ListMLE on {len(index)} lists: vectorised {vec * 1e3:.2f} ms, per-list loop {ref * 1e3:.1f} ms, "
          f"ratio {ref / vec:.0f}x, same value: {same} ==")
    n = 4
    fixed = synthetic_lists(2000, dim=FEATURE_DIM, min_len=n, max_len=n, seed=3)
    init = train_head(TrainConfig(epochs=1, mse_weight=0.0), fixed, test).initial_loss
    print(f"\n== sanity ==\nloss at initialisation (ListMLE alone) {init:.4f} vs log({n}!) = {math.log(math.factorial(n)):.4f}")
    one = ListData(
        features=fixed.features[:5], targets=torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0]),
        modality=torch.zeros(5, dtype=torch.long), offsets=torch.tensor([0, 5]),
    )
    overfit = train_head(TrainConfig(epochs=300, lr=1e-2, dropout=0.0), one, one)
    print(f"overfit one list: loss {overfit.initial_loss:.3f} -> {overfit.history[-1]['train_loss']:.4f}, "
          f"NDCG@5 {overfit.test_metrics['ndcg@5']:.4f}, Kendall tau {overfit.test_metrics['kendall_tau_b']:.3f}")


TABLE_DIM = 64
CPU_SETTING = {"epochs": 5, "lr": 3e-3, "lists_per_step": 8}


def _data_sets(args) -> dict[str, ListData]:
    known = synthetic_lists(args.table_lists, dim=TABLE_DIM, noise=args.noise, seed=0)
    offset = offset_lists(args.table_lists, text_dim=TABLE_DIM // 2, image_dim=TABLE_DIM // 2, offset_scale=3.0,
                          noise=args.noise, seed=0)
    for data in (known, offset):  # each list its own context: the prediction rows name their list
        data.context_ids = list(range(data.n_lists))
    sets = {"known": ("known generator (synthetic_lists)", known),
            "offsets": ("lists differing by offsets (offset_lists)", offset)}
    wanted = [part.strip() for part in args.data.split(",")]
    unknown = [w for w in wanted if w not in sets]
    if unknown:
        raise SystemExit(f"--data takes known and/or offsets, not {unknown}")
    return dict(sets[w] for w in wanted)


def bench_mse_sweep(args) -> None:
    """How mse_weight (the default's auxiliary MSE) was chosen: order and level, 3 folds."""
    print(f"\n== choosing mse_weight: ListMLE + w * MSE, 3-fold cross-validation, {args.table_lists} lists, "
          f"{CPU_SETTING} ==")
    print(f"{'data':<44}{'w':>6}{'NDCG@5':>16}{'MAE':>16}{'AUC-Safety':>16}{'Unsafe':>16}")
    for name, data in _data_sets(args).items():
        splits = cross_validation_splits(data, 3)
        for weight in (0.0, 0.1, 0.5, 2.0):
            try:
                evaluation = evaluate_methods(
                    splits, configs={"m": lambda seed, w=weight: TrainConfig(mse_weight=w, seed=seed, **CPU_SETTING)},
                    seeds=[0],
                )
            except TrainingDataError as exc:
                print(f"{name:<44}{weight:>6g}  failed: {exc}")
                continue
            runs = evaluation.methods[0]
            cells = "".join(f"{_cell(runs, key):>16}" for key in ("ndcg@5", "mae", "auc_safety_pooled", "unsafe_rate_pooled"))
            print(f"{name:<44}{weight:>6g}{cells}")


def _cell(runs, key) -> str:
    mean, fold_sd, _ = runs.summary(key)
    return f"{mean:.4f} ±{fold_sd:.3f}"


def bench_tables(args) -> None:
    """ListMLE vs BPO vs BCE vs random, with the fold spread, and the ranking metrics before
    and after calibration side by side, on both kinds of synthetic lists."""
    seeds = [int(s) for s in args.seeds.split(",")]
    for name, data in _data_sets(args).items():
        splits = cross_validation_splits(data, args.folds)
        configs = {
            f"{label} + MSE": (lambda seed, loss=loss: TrainConfig(loss=loss, seed=seed, **CPU_SETTING))
            for loss, label in (("listmle", "ListMLE"), ("bpo", "BPO"), ("bce", "BCE"))
        }
        configs |= {
            f"{label} alone": (lambda seed, loss=loss: TrainConfig(loss=loss, mse_weight=0.0, seed=seed, **CPU_SETTING))
            for loss, label in (("listmle", "ListMLE"), ("bpo", "BPO"))
        }
        evaluation, failed = _evaluate_each(splits, configs, seeds)
        print(f"\n== {name}: {data.n_lists} lists, {args.folds}-fold cross-validation by list, seeds {seeds}, "
              f"{CPU_SETTING} ==")
        for line in table(evaluation):
            print(line)
        for label, reason in failed.items():
            print(f"{label}: no model: {reason}")
        print("(mean over folds and seeds; ± sd over folds; ~ sd over seeds)")
        print(f"\n-- before / after calibration ({name}): the same test lists, raw head vs deployed head --")
        keys = [("ndcg@5", "NDCG@5"), ("mrr", "MRR"), ("kendall_tau_b", "tau-b"), ("mae", "MAE"), ("ece", "ECE")]
        print(f"{'method':<16}" + "".join(f"{title + ' raw':>13}{title + ' dep':>13}" for _, title in keys) + "  identical ranking")
        for method in evaluation.methods:
            if method.name == "random scores":
                continue
            raw, deployed = _before_after(evaluation.predictions, method.name)
            same = all(raw[k] == deployed[k] for k in ("ndcg@5", "mrr", "kendall_tau_b"))
            cells = "".join(f"{raw[k]:>13.4f}{deployed[k]:>13.4f}" for k, _ in keys)
            print(f"{method.name:<16}{cells}  {'yes' if same else 'NO'}")


def _evaluate_each(splits, configs, seeds):
    """evaluate_methods per config, so that one failing configuration (a flat calibration)
    is reported instead of stopping the table."""
    merged, failed = None, {}
    for label, make in configs.items():
        try:
            evaluation = evaluate_methods(splits, configs={label: make}, seeds=seeds)
        except TrainingDataError as exc:
            failed[label] = str(exc)
            continue
        if merged is None:
            merged = evaluation
        else:
            merged.methods.insert(len(merged.methods) - 1, evaluation.methods[0])
            merged.predictions += [row for row in evaluation.predictions if row["method"] == label]
    return merged, failed


def _before_after(rows, method):
    """Pooled metrics of the raw and the deployed scores of one method's prediction rows."""
    lists = {}
    for row in rows:
        if row["method"] == method:
            key = (row["seed"], row["fold"], row["context_id"])
            lists.setdefault(key, []).append((row["human_mean"], row["raw_score"], row["deployed_score"]))
    out = []
    for column in (1, 2):
        out.append(metrics.evaluate_lists(
            [(np.array([r[0] for r in v]), np.array([r[column] for r in v])) for v in lists.values()]
        ))
    return out


def bench_lora(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        vlm_path = args.vlm_path or str(build_tiny_vlm("qwen2_vl", Path(tmp) / "Qwen2-VL-tiny"))
        generator = torch.Generator().manual_seed(0)
        texts = ["helping the child cross", "comforting a friend", "mocking a stranger", "hurting the child"]
        lists = []
        for n in range(args.lists + 4):
            pixels = torch.randint(0, 256, (240, 320, 3), dtype=torch.uint8, generator=generator)
            path = Path(tmp) / f"image{n}.png"
            Image.frombytes("RGB", (320, 240), pixels.numpy().tobytes()).save(path)
            lists.append(ImageList(n, str(path), f"scene number {n}", texts, [5.0, 4.0, 2.0, 1.0], [0] * 4,
                                   list(range(4 * n, 4 * n + 4))))
        train, test = lists[: args.lists], lists[args.lists :]
        started = time.perf_counter()
        result = train_lora(TrainConfig(mode="lora", vlm_path=vlm_path, epochs=1), train, test)
        total = time.perf_counter() - started
        epoch = result.history[0]["seconds"]
        print(f"\n== LoRA training on {Path(vlm_path).name} ({result.device}, {result.dtype}), 1 epoch, "
              f"{len(train)} lists of 4 scenarios, 1 list per step ==")
        print(f"training epoch {epoch:.2f} s: {len(train) / epoch:.1f} lists/s, {4 * len(train) / epoch:.1f} "
              f"scenarios/s; whole call (load, init loss, test forwards, calibration) {total:.1f} s")


def _time(fn, repeat: int = 20) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - started) / repeat


if __name__ == "__main__":
    main()

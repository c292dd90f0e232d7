"""Training benchmark on synthetic data of the MM-SCALE size (issue #4).

    .venv/bin/python bench/train.py            # full size: 9,260 lists, 32,212 scenarios, 1664-d
    .venv/bin/python bench/train.py --quick    # a tenth of it, for a smoke run

Prints, side by side from one run:
- head-only training, 5 epochs, on this CPU (target: under 60 s), at the paper's setting
  (one list per step: about 46,000 optimiser steps, bound by per-step overhead) and with
  16 lists per step;
- vectorised ListMLE against the per-list Python loop (same values), as a ratio;
- the sanity checks: loss at initialisation vs log(n!), overfitting one list;
- ListMLE vs the BPO and BCE baselines on held-out synthetic lists (the paper's Table 3
  ordering: is ListMLE best on NDCG@5, MRR and AUC-Safety here?).

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
from training import losses  # noqa: E402
from training.lists import ImageList, ListData  # noqa: E402
from training.lora import train_lora  # noqa: E402
from training.synthetic import synthetic_lists  # noqa: E402
from training.train import TrainConfig, train_head  # noqa: E402

MM_SCALE_LISTS, MM_SCALE_SCENARIOS, FEATURE_DIM = 9_260, 32_212, 1_664


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tenth of the MM-SCALE size")
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--mode", choices=["head", "lora"], default="head")
    parser.add_argument("--vlm-path", help="--mode lora: a local VLM checkpoint (default: a tiny Qwen2-VL)")
    parser.add_argument("--lists", type=int, default=16, help="--mode lora: training lists of 4 scenarios")
    args = parser.parse_args()
    if args.mode == "lora":
        bench_lora(args)
        return
    scale = 0.1 if args.quick else 1.0
    n_lists, n_items = int(MM_SCALE_LISTS * scale), int(MM_SCALE_SCENARIOS * scale)
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {n_lists} lists, {n_items} scenarios, {FEATURE_DIM}-d")

    train = synthetic_lists(n_lists, dim=FEATURE_DIM, total_items=n_items, noise=args.noise, seed=0)
    test = synthetic_lists(max(200, n_lists // 9), dim=FEATURE_DIM, noise=args.noise, seed=1)

    # 1. Head-only training: the paper's setting, and lists batched for a CPU.
    for label, config in (
        ("paper setting: 1 list per step, AdamW lr 1e-4", TrainConfig(epochs=5, lr=1e-4, lists_per_step=1)),
        ("CPU setting: 16 lists per step, AdamW lr 1e-3", TrainConfig(epochs=5, lr=1e-3, lists_per_step=16)),
    ):
        started = time.perf_counter()
        result = train_head(config, train, test)
        seconds = time.perf_counter() - started
        print(f"\n== head-only training, ListMLE, 5 epochs, {label} ==")
        for row in result.history:
            print(f"epoch {row['epoch']}: loss {row['train_loss']:.4f}  test NDCG@5 {row['test']['ndcg@5']:.4f}  {row['seconds']:.1f} s")
        print(f"total {seconds:.1f} s (target < 60 s): {'PASS' if seconds < 60 else 'MISS'}")
        print(f"test NDCG@5 {result.test_metrics['ndcg@5']:.4f} (ranking recovered: > 0.95): "
              f"{'PASS' if result.test_metrics['ndcg@5'] > 0.95 else 'MISS'}")

    # 2. Vectorised ListMLE vs the per-list loop, on the same padded batch.
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

    # 3. Sanity checks.
    n = 4
    fixed = synthetic_lists(2000, dim=FEATURE_DIM, min_len=n, max_len=n, seed=3)
    init = train_head(TrainConfig(epochs=1), fixed, test).initial_loss
    print(f"\n== sanity ==\nloss at initialisation {init:.4f} vs log({n}!) = {math.log(math.factorial(n)):.4f}")
    one = ListData(
        features=fixed.features[:5], targets=torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0]),
        modality=torch.zeros(5, dtype=torch.long), offsets=torch.tensor([0, 5]),
    )
    overfit = train_head(TrainConfig(epochs=300, lr=1e-2, dropout=0.0), one, one)
    print(f"overfit one list: loss {overfit.initial_loss:.3f} -> {overfit.history[-1]['train_loss']:.4f}, "
          f"NDCG@5 {overfit.test_metrics['ndcg@5']:.4f}, Kendall tau {overfit.test_metrics['kendall_tau_b']:.3f}")

    # 4. The paper's comparison (Table 3 shape) on the synthetic benchmark.
    rows = {}
    for loss in ("listmle", "bpo", "bce"):
        rows[loss] = train_head(TrainConfig(loss=loss, epochs=5, lr=1e-3, lists_per_step=16), train, test).test_metrics
    keys = [("ndcg@5", "NDCG@5"), ("mrr", "MRR"), ("unsafe_rate_pooled", "Unsafe"), ("auc_safety_pooled", "AUC-Saf"),
            ("kendall_tau_b", "tau-b"), ("ece", "ECE")]
    print("\n== synthetic benchmark, 5 epochs each, 16 lists per step ==")
    print(f"{'loss':<8}" + "".join(f"{title:>10}" for _, title in keys))
    for loss, values in rows.items():
        print(f"{loss:<8}" + "".join(f"{values[key]:>10.4f}" for key, _ in keys))
    for key, title in (("ndcg@5", "NDCG@5"), ("mrr", "MRR"), ("auc_safety_pooled", "AUC-Safety")):
        best = max(rows, key=lambda loss: rows[loss][key])
        print(f"best on {title}: {best}" + ("" if best == "listmle" else "  (the paper's ordering does NOT hold here)"))


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

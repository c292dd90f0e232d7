"""Evaluation that works at any size: cross-validation by list, spread over folds and seeds,
a random-score row, per-scenario predictions anyone can recompute the metrics from.

No database: ``evaluate_model`` (the command) reads the export and the current version's
stored scores and passes them in; ``training.services`` writes a run's predictions here too.
"""

from __future__ import annotations

import csv
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .lists import ListData, TrainingDataError
from .train import TrainConfig, evaluate_scores, predict, train_head

MIN_TEST_LISTS = 20
"""Below this many test lists a figure moves with the luck of the split (issue 11: MRR 0.31
-> 1.00 between two seeds on one test list): a warning, not an error."""

PREDICTION_COLUMNS = (
    "method", "seed", "fold", "context_id", "scenario_id", "human_mean", "raw_score", "deployed_score", "loss",
)

# Every Table 3-shaped output, in this order (the metric key, its title).
COLUMNS = [
    ("ndcg@5", "NDCG@5"), ("mrr", "MRR"), ("unsafe_rate_pooled", "Unsafe Rate"), ("auc_safety_pooled", "AUC-Safety"),
    ("kendall_tau_b", "Kendall tau"), ("mae", "MAE"), ("ece", "ECE"), ("grounding_share", "Grounding"),
]


def small_test_warning(n_lists: int, where: str = "the test split") -> str | None:
    """The warning for a test split of fewer than MIN_TEST_LISTS lists, or None."""
    if n_lists >= MIN_TEST_LISTS:
        return None
    return (
        f"warning: {where} has {n_lists} list(s), fewer than {MIN_TEST_LISTS}: its figures depend on which "
        "lists it drew (use evaluate_model --folds K, or more data)"
    )


def fold_of_lists(data: ListData, folds: int, seed: int = 0) -> list[int]:
    """The fold (0..folds-1) of each list: whole contexts go to one fold (a context's lists
    never straddle folds), contexts shuffled by ``seed`` and dealt round-robin.

    Lists without a context id are each their own context. TrainingDataError when there
    are fewer contexts than folds, naming the number of lists.
    """
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise TrainingDataError(f"cross-validation needs 2 or more folds, not {folds!r}")
    contexts = data.context_ids if len(data.context_ids) == data.n_lists else list(range(-data.n_lists, 0))
    distinct = list(dict.fromkeys(contexts))
    if len(distinct) < folds:
        raise TrainingDataError(
            f"the data set has {data.n_lists} list(s) ({len(distinct)} context(s)): too few for {folds} folds "
            f"(at most {len(distinct)})"
        )
    order = np.random.default_rng(seed).permutation(len(distinct))
    fold_of_context = {distinct[i]: n % folds for n, i in enumerate(order)}
    return [fold_of_context[c] for c in contexts]


@dataclass
class Split:
    """One train/test split of the lists: a fold, or the export's own split."""

    name: str  # "0".."K-1", or "export"
    train: ListData
    test: ListData


def cross_validation_splits(data: ListData, folds: int, seed: int = 0) -> list[Split]:
    which = fold_of_lists(data, folds, seed)
    splits = []
    for fold in range(folds):
        test = [n for n, f in enumerate(which) if f == fold]
        train = [n for n, f in enumerate(which) if f != fold]
        splits.append(Split(str(fold), data.subset(train), data.subset(test)))
    return splits


@dataclass
class MethodRuns:
    """One row of the table: its metrics per (seed, split)."""

    name: str
    runs: dict[tuple[int, str], dict] = field(default_factory=dict)

    def summary(self, key: str) -> tuple[float, float, float]:
        """(mean over all runs, sd over splits averaged over seeds, sd over seeds of the
        mean over splits); NaN where undefined (one split, one seed)."""
        seeds = sorted({s for s, _ in self.runs})
        splits = sorted({f for _, f in self.runs})
        grid = np.array([[_num(self.runs.get((s, f), {}).get(key)) for f in splits] for s in seeds], dtype=float)
        if grid.size == 0 or np.isnan(grid).all():
            return math.nan, math.nan, math.nan
        mean = float(np.nanmean(grid))
        fold_sd = float(np.nanmean(np.nanstd(grid, axis=1, ddof=1))) if len(splits) > 1 else math.nan
        seed_sd = float(np.nanstd(np.nanmean(grid, axis=1), ddof=1)) if len(seeds) > 1 else math.nan
        return mean, fold_sd, seed_sd


def _num(value) -> float:
    return math.nan if value is None else float(value)


@dataclass
class Evaluation:
    methods: list[MethodRuns]
    predictions: list[dict]
    warnings: list[str]


def random_scores(n: int, seed: int, split: str) -> np.ndarray:
    """Uniform 1-5 scores, seeded by the run's seed and split: the chance row."""
    return np.random.default_rng([seed, zlib.crc32(split.encode())]).uniform(1.0, 5.0, size=n)


def prediction_rows(method: str, seed: int, split: Split, raw, deployed, loss: str) -> list[dict]:
    test = split.test
    context = np.repeat(
        np.array(test.context_ids if len(test.context_ids) == test.n_lists else [None] * test.n_lists, dtype=object),
        (test.offsets[1:] - test.offsets[:-1]).numpy(),
    )
    ids = test.scenario_ids if len(test.scenario_ids) == len(test.targets) else [None] * len(test.targets)
    return [
        {"method": method, "seed": seed, "fold": split.name, "context_id": context[i], "scenario_id": ids[i],
         "human_mean": float(test.targets[i]), "raw_score": float(raw[i]), "deployed_score": float(deployed[i]),
         "loss": loss}
        for i in range(len(test.targets))
    ]


def evaluate_methods(
    splits: Sequence[Split],
    *,
    configs: dict[str, Callable[[int], TrainConfig]],
    seeds: Sequence[int],
    current: tuple[str, dict[int, float]] | None = None,
    k: int = 5,
) -> Evaluation:
    """Train every configured method on every split's train lists for every seed; score the
    test lists; add the random row and, with ``current`` (its name, its stored scores by
    scenario id), the current version on the test lists it scored fully.

    ``configs`` maps a row name to a function of the seed giving its TrainConfig. Raises
    TrainingDataError (naming the split) for data that cannot train.
    """
    warnings = []
    for split in splits:
        warning = small_test_warning(split.test.n_lists, f"test split {split.name}")
        if warning:
            warnings.append(warning)
    methods = {name: MethodRuns(name) for name in [*configs, "random scores"]}
    predictions: list[dict] = []
    for seed in seeds:
        for split in splits:
            for name, make in configs.items():
                config = make(seed)
                try:
                    result = train_head(config, split.train, split.test)
                except TrainingDataError as exc:
                    raise TrainingDataError(f"{name}, seed {seed}, split {split.name}: {exc}") from None
                methods[name].runs[(seed, split.name)] = result.test_metrics
                raw = predict(result.raw_head, split.test.features)
                deployed = predict(result.head, split.test.features)
                loss = config.loss + (f"+{config.mse_weight:g}*mse" if config.mse_weight else "")
                predictions += prediction_rows(name, seed, split, raw, deployed, loss)
            chance = random_scores(len(split.test.targets), seed, split.name)
            methods["random scores"].runs[(seed, split.name)] = evaluate_scores(chance, split.test, k=k)
            predictions += prediction_rows("random scores", seed, split, chance, chance, "none")
    if current is not None:
        name, scores = current
        row = MethodRuns(f"current: {name}")
        for split in splits:
            ids = np.array(split.test.scenario_ids)
            scored = [n for n, (_, idx) in enumerate(split.test.lists()) if all(int(s) in scores for s in ids[idx])]
            if not scored:
                continue
            part = Split(split.name, split.train, split.test.subset(scored))
            pred = np.array([scores[int(s)] for s in part.test.scenario_ids], dtype=float)
            metrics = evaluate_scores(pred, part.test, k=k)
            for seed in seeds:  # the same figures for every seed: it was not trained here
                row.runs[(seed, split.name)] = metrics
            predictions += prediction_rows(row.name, seeds[0], part, pred, pred, "stored predictions")
        methods[row.name] = row
    return Evaluation(list(methods.values()), predictions, warnings)


def write_predictions(path: str | Path, rows: Sequence[dict]) -> Path:
    """Per-scenario predictions as CSV (PREDICTION_COLUMNS), for recomputing the metrics."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=PREDICTION_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: ("" if row.get(key) is None else row[key]) for key in PREDICTION_COLUMNS})
    return path


def table(evaluation: Evaluation) -> list[str]:
    """The Table 3-shaped lines: mean, and "± sd over folds / sd over seeds" where defined."""
    rows = []
    for method in evaluation.methods:
        if not method.runs:
            continue
        cells = []
        for key, _ in COLUMNS:
            mean, fold_sd, seed_sd = method.summary(key)
            cell = _fmt(mean)
            if not math.isnan(fold_sd):
                cell += f" ±{fold_sd:.3f}"
            if not math.isnan(seed_sd):
                cell += f" ~{seed_sd:.3f}"
            cells.append(cell)
        rows.append((method.name, cells))
    width = max([len(name) for name, _ in rows] + [6])
    cell_width = max([len(c) for _, cells in rows for c in cells] + [len(t) for _, t in COLUMNS])
    lines = [f"{'Method':<{width}}  " + "  ".join(f"{title:>{cell_width}}" for _, title in COLUMNS)]
    lines += [f"{name:<{width}}  " + "  ".join(f"{c:>{cell_width}}" for c in cells) for name, cells in rows]
    return lines


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"

"""Compare ListMLE with the BPO and BCE baselines on one export, in the shape of the
paper's Table 3, plus random scores and the current model version on the same test lists.

``--folds K`` cross-validates by list (a context's lists never straddle folds) instead of
using the export's split; ``--seeds`` repeats everything per seed. Every cell is the mean,
``±`` the spread (sd) over folds, ``~`` the spread over seeds. Per-scenario predictions go to
a CSV file whose path is printed.
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from annotation.dataset.export.service import dataset_export_create
from modelloop import selectors as modelloop_selectors
from modelloop.models import Prediction
from modelloop.scoring.offline import EfficientNetMiniLMBackbone
from training.data import lists_from_export
from training.evaluation import (
    Split,
    cross_validation_splits,
    evaluate_methods,
    table,
    write_predictions,
)
from training.lists import ListData, TrainingDataError
from training.train import TrainConfig

from ._common import add_train_options, export_from, train_config

LOSSES = (("listmle", "ListMLE"), ("bpo", "BPO"), ("bce", "BCE"))


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--seeds takes whole numbers separated by commas, not {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise CommandError(f"--seeds needs one or more distinct seeds, not {text!r}")
    return seeds


class Command(BaseCommand):
    help = (
        "Train ListMLE, BPO and BCE heads and report the paper's metrics (plus MAE, ECE, grounding-check share) "
        "beside random scores and the current version, on the export's test split or by cross-validation."
    )

    def add_arguments(self, parser):
        add_train_options(parser)
        parser.add_argument("--folds", type=int, default=None, help="K-fold cross-validation by list (K >= 2)")
        parser.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2 (default: --seed)")
        parser.add_argument("--predictions", default=None, help="CSV file for the per-scenario predictions")

    def handle(self, *args, **options):
        seeds = _seeds(options["seeds"]) if options["seeds"] is not None else [options["seed"]]
        try:
            configs = {
                f"{label} head": (lambda seed, loss=loss: TrainConfig(**train_config(options, loss=loss, seed=seed)))
                for loss, label in LOSSES
            }
            for make in configs.values():
                make(seeds[0])  # validate before anything is read
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        export = export_from(options) or dataset_export_create(fmt="jsonl")
        try:
            data = lists_from_export(path=export.file.path, backbone=EfficientNetMiniLMBackbone())
            if options["folds"] is not None:
                every = ListData.concat([data.train, data.test])
                splits = cross_validation_splits(every, options["folds"], seed=seeds[0])
                self.stdout.write(
                    f"{export}: {every.n_lists} lists ({len(every.targets)} scenarios), {options['folds']}-fold "
                    f"cross-validation by list; seeds {', '.join(map(str, seeds))}\n"
                )
            else:
                splits = [Split("export", data.train, data.test)]
                self.stdout.write(
                    f"{export}: {data.train.n_lists} train lists, {data.test.n_lists} test lists "
                    f"({len(data.test.targets)} test scenarios); seeds {', '.join(map(str, seeds))}\n"
                )
            current = modelloop_selectors.model_version_current_or_none()
            stored = None
            if current is not None:
                ids = [sid for split in splits for sid in split.test.scenario_ids]
                stored = (current.name, dict(
                    Prediction.objects.filter(
                        model_version=current, scenario_id__in=ids, status=Prediction.Status.OK
                    ).values_list("scenario_id", "score")
                ))
            evaluation = evaluate_methods(splits, configs=configs, seeds=seeds, current=stored)
        except TrainingDataError as exc:
            raise CommandError(str(exc)) from None
        for warning in evaluation.warnings:
            self.stdout.write(self.style.WARNING(warning))
        for line in table(evaluation):
            self.stdout.write(line)
        if current is not None and not any(m.name.startswith("current:") for m in evaluation.methods):
            self.stdout.write(f"current: {current.name} has not scored every scenario of any test list: no row")
        path = options["predictions"] or (
            settings.VAR_DIR / "evaluations" / f"evaluate-export{export.pk}-{timezone.now():%Y%m%d-%H%M%S}.csv"
        )
        path = write_predictions(path, evaluation.predictions)
        self.stdout.write(
            "\nHigher is better except Unsafe Rate, MAE, ECE and Grounding (the share of test judgments "
            f"|judgment - score| >= {settings.MORALE_DISAGREEMENT_THRESHOLD}, sent to a grounding check). "
            "Metrics per image list (paper, appendix 12); ± sd over folds, ~ sd over seeds."
        )
        self.stdout.write(f"Per-scenario predictions: {path}")

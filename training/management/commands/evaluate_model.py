"""Compare ListMLE with the BPO and BCE baselines on one export, in the shape of the
paper's Table 3, plus the current model version on the same test lists."""

import math

from django.core.management.base import BaseCommand, CommandError

from annotation.dataset.export.service import dataset_export_create
from modelloop import selectors as modelloop_selectors
from modelloop.scoring.offline import EfficientNetMiniLMBackbone
from training.data import lists_from_export
from training.gate import version_metrics_on
from training.lists import TrainingDataError
from training.train import TrainConfig, train_head

from ._common import add_train_options, export_from, train_config

COLUMNS = [("ndcg@5", "NDCG@5"), ("mrr", "MRR"), ("unsafe_rate_pooled", "Unsafe Rate"),
           ("auc_safety_pooled", "AUC-Safety"), ("kendall_tau_b", "Kendall tau"), ("ece", "ECE")]


class Command(BaseCommand):
    help = "Train ListMLE, BPO and BCE heads on an export's train split and report the paper's metrics on its test split."

    def add_arguments(self, parser):
        add_train_options(parser)

    def handle(self, *args, **options):
        export = export_from(options) or dataset_export_create(fmt="jsonl")
        try:
            data = lists_from_export(path=export.file.path, backbone=EfficientNetMiniLMBackbone())
        except TrainingDataError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{export}: {data.train.n_lists} train lists, {data.test.n_lists} test lists "
            f"({len(data.test.targets)} test scenarios)\n"
        )
        rows = []
        for loss, label in (("listmle", "ListMLE"), ("bpo", "BPO"), ("bce", "BCE")):
            try:
                result = train_head(TrainConfig(**train_config(options, loss=loss)), data.train, data.test)
            except TrainingDataError as exc:
                raise CommandError(f"{label}: {exc}") from None
            rows.append((f"{label} head", result.test_metrics))
        current = modelloop_selectors.model_version_current_or_none()
        if current is not None:
            compared = version_metrics_on(current, data.test)
            if compared is not None:
                rows.append((f"current: {current.name} ({len(compared[1])} lists)", compared[0]))
        width = max(len(name) for name, _ in rows)
        self.stdout.write(f"{'Method':<{width}}  " + "  ".join(f"{title:>11}" for _, title in COLUMNS))
        for name, values in rows:
            cells = "  ".join(f"{_fmt(values.get(key)):>11}" for key, _ in COLUMNS)
            self.stdout.write(f"{name:<{width}}  {cells}")
        self.stdout.write("\nHigher is better except Unsafe Rate and ECE. Metrics per image list (paper, appendix 12).")


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"

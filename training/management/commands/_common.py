"""Options shared by the training commands."""

from django.core.management.base import CommandError

from annotation.models import DatasetExport
from training.train import TrainConfig


def add_train_options(parser) -> None:
    parser.add_argument("--export", type=int, help="DatasetExport id (JSONL or Parquet); default: write a new JSONL export")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--lists-per-step", type=int, default=1, help="lists per optimiser step (paper: 1)")
    parser.add_argument(
        "--mse-weight", type=float, default=None,
        help=f"auxiliary MSE on the 1-5 scale (default {TrainConfig.mse_weight}; 0: the loss alone)",
    )
    parser.add_argument("--modality-weight", type=float, default=0.0, help="modality classification head")
    parser.add_argument("--seed", type=int, default=0)


def train_config(options, *, loss: str, seed: int | None = None) -> dict:
    config = {
        "loss": loss,
        "epochs": options["epochs"],
        "lr": options["lr"],
        "lists_per_step": options["lists_per_step"],
        "modality_weight": options["modality_weight"],
        "seed": options["seed"] if seed is None else seed,
    }
    if options["mse_weight"] is not None:
        config["mse_weight"] = options["mse_weight"]
    return config


def export_from(options) -> DatasetExport | None:
    if options["export"] is None:
        return None
    export = DatasetExport.objects.filter(pk=options["export"]).first()
    if export is None:
        raise CommandError(f"There is no dataset export #{options['export']}.")
    return export

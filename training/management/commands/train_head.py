"""Train the ranking head on a dataset export; the gate decides whether it becomes current.

``--mode lora`` trains LoRA adapters on a VLM checkpoint together with the head (a GPU
machine); the default ``--mode head`` trains the head alone on cached features.
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from training import services
from training.models import TrainingRun

from ._common import add_train_options, export_from, train_config


class Command(BaseCommand):
    help = "Train a head (ListMLE by default) on a dataset export; promote it if it passes the gate."

    def add_arguments(self, parser):
        add_train_options(parser)
        parser.add_argument("--loss", choices=["listmle", "bpo", "bce"], default="listmle")
        parser.add_argument(
            "--mode",
            choices=["head", "lora"],
            default="head",
            help="head: the head alone on cached features (CPU is fine); lora: LoRA on the VLM backbone + head (GPU)",
        )
        parser.add_argument(
            "--vlm-path",
            default=None,
            help="--mode lora: local Hugging Face VLM checkpoint directory (default: MORALE_VLM_PATH)",
        )
        parser.add_argument(
            "--gradient-checkpointing", action="store_true", help="--mode lora: less GPU memory, more compute"
        )
        parser.add_argument(
            "--max-image-side", type=int, default=336, help="--mode lora: longest image side (paper: 336)"
        )

    def handle(self, *args, **options):
        config = train_config(options, loss=options["loss"])
        if options["mode"] == "lora":
            config |= {
                "mode": "lora",
                "vlm_path": options["vlm_path"] or settings.MORALE_VLM_PATH,
                "gradient_checkpointing": options["gradient_checkpointing"],
                "max_image_side": options["max_image_side"],
            }
        elif options["vlm_path"] or options["gradient_checkpointing"] or options["max_image_side"] != 336:
            raise CommandError("--vlm-path, --gradient-checkpointing and --max-image-side go with --mode lora")
        try:
            run = services.training_run_queue(
                config=config, export=export_from(options), triggered_by=TrainingRun.Trigger.COMMAND
            )
        except (services.TrainingRunInProgress, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Training run #{run.pk} started.")
        with tqdm(total=1, unit="step", desc=f"run #{run.pk}", disable=options["verbosity"] == 0) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            run = services.training_run_execute(run_id=run.pk, progress=progress)
        if run.status == TrainingRun.Status.FAILED:
            raise CommandError(f"Training run #{run.pk} failed: {run.error}")
        test = run.metrics.get("test", {})
        self.stdout.write(
            f"Run #{run.pk} produced {run.model_version.name}: test NDCG@5 {test.get('ndcg@5', float('nan')):.4f}, "
            f"MRR {test.get('mrr', float('nan')):.4f}, Unsafe Rate {test.get('unsafe_rate_pooled', float('nan')):.4f}"
        )
        self.stdout.write(("Promoted: " if run.promoted else "Kept as a candidate: ") + run.gate_reason)

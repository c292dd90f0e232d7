"""Probe a model version's robustness (image corruptions, text perturbations, persuasion) and
its use of the image (neutral image, setting removed); store and print the figures.

Default: the current version, on the latest finished export's test lists (a new JSONL
export when there is none); ``--against`` adds a reference for CE and Rel. mCE.
"""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotation.models import DatasetExport
from modelloop import selectors as modelloop_selectors
from modelloop.models import ModelVersion
from training.models import ProbeRun
from training.probes import report
from training.probes.runner import ProbeError, probe_run_create, probe_run_execute


def _version(pk: int | None, what: str) -> ModelVersion | None:
    if pk is None:
        return None
    version = ModelVersion.objects.filter(pk=pk).first()
    if version is None:
        raise CommandError(f"There is no model version #{pk} ({what}).")
    return version


class Command(BaseCommand):
    help = "Probe a model version: corruptions, text perturbations, persuasion and image reliance."

    def create_parser(self, prog_name, subcommand, **kwargs):
        # The interface is ``--version ID``; Django's own --version (print Django's
        # version) gives way to it.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--version", type=int, help="ModelVersion id (default: the current version)")
        parser.add_argument("--against", type=int, help="reference ModelVersion id for CE and Rel. mCE")
        parser.add_argument("--suite", choices=["pilot", "full"], default="pilot")
        parser.add_argument("--contexts", type=int, help="probe at most this many contexts (default: all)")
        parser.add_argument("--split", choices=["test", "train", "all"], default="test")
        parser.add_argument("--export", type=int, help="DatasetExport id (default: the latest finished one)")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, **options):
        version = _version(options["version"], "--version") or modelloop_selectors.model_version_current_or_none()
        if version is None:
            raise CommandError("There is no current model version; pass --version.")
        against = _version(options["against"], "--against")
        export = None
        if options["export"] is not None:
            export = DatasetExport.objects.filter(pk=options["export"]).first()
            if export is None:
                raise CommandError(f"There is no dataset export #{options['export']}.")
        try:
            run = probe_run_create(
                model_version=version, against=against, suite=options["suite"], split=options["split"],
                max_contexts=options["contexts"], seed=options["seed"], export=export,
            )
        except ProbeError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Probe run #{run.pk} of {version.name}" + (f" against {against.name}" if against else ""))
        with tqdm(total=1, unit="pair", desc=f"probe #{run.pk}", disable=options["verbosity"] == 0) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            run = probe_run_execute(run_id=run.pk, progress=progress)
        if run.status == ProbeRun.Status.FAILED:
            raise CommandError(f"Probe run #{run.pk} failed: {run.error}")
        self.stdout.write(report.text_table(run))

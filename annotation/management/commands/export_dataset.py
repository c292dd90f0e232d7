"""``manage.py export_dataset``: write a dataset export and print where it is.

    python manage.py export_dataset --format jsonl
    python manage.py export_dataset --format csv --source initial --max-sd none --include-canaries

Options left out take their ``MORALE_EXPORT_*`` setting; each ``--include-*`` has a
``--no-include-*`` to override a setting that turned it on. Prints the file path, its
sha256 and the counts (JSON). The format and the filters: docs/dataset-export.md.
Exit status 1 when the export failed (its record says why).
"""

import argparse
import json

from django.core.management.base import BaseCommand, CommandError

from annotation.dataset.export.service import ExportFailed, dataset_export_create
from annotation.dataset.format import FORMATS, SOURCES


def _max_sd(value: str):
    if value.strip().lower() in ("none", "off"):
        return None
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', not {value!r}") from None
    if not number >= 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return number


class Command(BaseCommand):
    help = "Export the judgments as a versioned dataset file (JSONL, CSV or Parquet) and record it."

    def add_arguments(self, parser):
        parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
        parser.add_argument(
            "--source",
            choices=SOURCES,
            help="reconfirmed: the answer after a grounding check where there is one; initial: first answers only",
        )
        parser.add_argument(
            "--max-sd", type=_max_sd, default=argparse.SUPPRESS, metavar="SD|none",
            help="drop scenarios whose sample sd is above SD; 'none' keeps them all",
        )
        parser.add_argument(
            "--include-screened", action=argparse.BooleanOptionalAction, default=None,
            help="keep judgments of screened-out annotators",
        )
        parser.add_argument(
            "--include-canaries", action=argparse.BooleanOptionalAction, default=None,
            help="keep canary scenarios (failed canary judgments are removed either way)",
        )
        parser.add_argument(
            "--include-imported", action=argparse.BooleanOptionalAction, default=None,
            help="keep imported ratings and pre-aggregated scores (default: MORALE_EXPORT_INCLUDE_IMPORTED)",
        )

    def handle(self, *args, fmt, **options):
        overrides = {
            name: options[name]
            for name in ("source", "include_screened", "include_canaries", "include_imported")
            if options.get(name) is not None
        }
        if "max_sd" in options:
            overrides["max_sd"] = options["max_sd"]
        try:
            export = dataset_export_create(fmt=fmt, **overrides)
        except ExportFailed as exc:
            raise CommandError(str(exc)) from exc
        except (ValueError, TypeError) as exc:
            raise CommandError(str(exc)) from exc
        try:
            location = export.file.path
        except NotImplementedError:  # storage without local paths
            location = export.file.name
        self.stdout.write(f"file: {location}")
        self.stdout.write(f"sha256: {export.sha256}")
        self.stdout.write(f"export: #{export.pk} ({export.format}, {export.format_version})")
        self.stdout.write("counts: " + json.dumps(export.counts, indent=2))

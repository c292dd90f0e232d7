"""``manage.py import_contexts``: import contexts, scenarios and ratings from CSV or JSON Lines.

    python manage.py import_contexts contexts.csv --images images/
    python manage.py import_contexts contexts.jsonl --images images.zip --allow-partial
    python manage.py import_contexts morale-export.jsonl --images "$MEDIA_ROOT"
    python manage.py import_contexts ratings.csv          # ratings of stored contexts: no images
    python manage.py import_contexts pilot.csv --images pilot/ --count-towards-target

The formats, matching and checks: docs/dataset-import.md. Prints the
batch, its counts (created vs already present) and every row error. Exit status 1 when the
file was rejected (nothing imported) or the import failed; 0 when it was imported (with
``--allow-partial``, rows with errors were skipped and are listed).
"""

import json

from django.core.management.base import BaseCommand, CommandError

from annotation.dataset.importing.errors import ImportFailed
from annotation.dataset.importing.readers import FORMATS
from annotation.dataset.importing.service import import_contexts
from annotation.models import ImportBatch


def error_line(error: dict) -> str:
    where = "file" if error.get("row") is None else f"row {error['row']}"
    if error.get("field"):
        where += f", {error['field']}"
    return f"{where}: {error['message']}"


class Command(BaseCommand):
    help = "Import contexts, scenarios and ratings from a CSV or JSON Lines file, images from a folder or a zip."

    def add_arguments(self, parser):
        parser.add_argument("file", help="the CSV or JSON Lines file (a morale-export/1 JSONL export works as is)")
        parser.add_argument(
            "--images", metavar="DIR_OR_ZIP",
            help="folder or zip holding the images (not needed when every row names a stored context)",
        )
        parser.add_argument(
            "--allow-partial", action="store_true", help="import the rows without errors and skip the others"
        )
        parser.add_argument("--format", choices=FORMATS, dest="fmt", help="default: from the file name")
        parser.add_argument(
            "--count-towards-target", action="store_true",
            help="the imported ratings fill the scenarios' MORALE_JUDGMENTS_PER_SCENARIO slots "
            "(default: live annotators still give all of them)",
        )

    def handle(self, *args, file, images, allow_partial, fmt, count_towards_target, **options):
        try:
            batch = import_contexts(
                data_file=file, images=images, allow_partial=allow_partial, fmt=fmt,
                count_towards_target=count_towards_target,
            )
        except FileNotFoundError as exc:
            raise CommandError(f"cannot read {exc.filename}: {exc.strerror}") from exc
        except ImportFailed as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"import: #{batch.pk} {batch.file_name} ({batch.format}, sha256 {batch.file_sha256})")
        self.stdout.write(f"status: {batch.status}")
        self.stdout.write("counts: " + json.dumps(batch.counts, indent=2))
        if batch.errors:
            heading = "rows skipped" if batch.status == ImportBatch.Status.DONE else "errors"
            self.stdout.write(f"{heading} ({batch.counts.get('errors', len(batch.errors))}):")
            for error in batch.errors:
                self.stdout.write("  " + error_line(error))
        if batch.status != ImportBatch.Status.DONE:
            raise CommandError(
                f"import #{batch.pk} rejected: {batch.counts.get('errors', len(batch.errors))} error(s); nothing was "
                "imported (fix the rows, or --allow-partial to import the others)"
            )

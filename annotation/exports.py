# TEMPORARY restructure shim: re-exports annotation.dataset (format, export.*); the lead removes it after the merge.
from annotation.dataset.export.options import ExportOptions  # noqa: F401
from annotation.dataset.export.records import (  # noqa: F401
    DROPPED_KEYS,
    SOURCE_KEYS,
    Tally,
    export_context_total,
    high_water_marks,
    iter_records,
)
from annotation.dataset.export.service import (  # noqa: F401
    ExportFailed,
    WriteResult,
    dataset_export_claim,
    dataset_export_create,
    dataset_export_queue,
    dataset_export_run,
    export_write,
    exports_resume,
)
from annotation.dataset.export.writers import CSV_FORMULA_PREFIXES, csv_cell, csv_rows  # noqa: F401
from annotation.dataset.format import (  # noqa: F401
    CSV_COLUMNS,
    FORMAT,
    FORMATS,
    JUDGMENT_KEYS,
    MODALITIES,
    SOURCES,
    SPLITS,
    ExportFormatError,
    aggregate,
    check_record,
    iter_export,
    parquet_schema,
    split_for,
)

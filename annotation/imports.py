# TEMPORARY restructure shim: re-exports annotation.dataset.importing (service and stages); the lead removes it after the merge.
from annotation.dataset.importing.errors import ImportFailed  # noqa: F401
from annotation.dataset.importing.images import KEEP_IMAGE_BYTES, FolderImages, ImageSource, ZipImages, open_images  # noqa: F401
from annotation.dataset.importing.readers import (  # noqa: F401
    CONTEXT_KEYS,
    CSV_COLUMNS,
    CSV_REQUIRED,
    EXPORT_ONLY_CONTEXT_KEYS,
    EXPORT_ONLY_SCENARIO_KEYS,
    FORMATS,
    SCENARIO_KEYS,
)
from annotation.dataset.importing.rows import ContextIn, Row, ScenarioIn, clean_image_path  # noqa: F401
from annotation.dataset.importing.service import (  # noqa: F401
    MAX_STORED_ERRORS,
    import_contexts,
    import_queue,
    import_run,
    imports_resume,
)
from annotation.dataset.importing.writer import CONTEXT_BATCH, SCENARIO_BATCH  # noqa: F401

# TEMPORARY restructure shim: re-exports annotation.research.quality, .items (flagged_items) and annotation.services_screening; the lead removes it after the merge.
"""Old path of quality control; the figures and flags live in ``annotation.research.quality``,
the status changes in ``annotation.services_screening``."""

from annotation.research.quality import (  # noqa: F401
    CORRELATION_MIN_ITEMS,
    VARIANCE_Z_MIN_ANNOTATORS,
    annotator_flags,
    annotator_quality_summary,
    annotator_stats,
    flagged_annotators,
    quality_refresh,
)
from annotation.research.items import flagged_items  # noqa: F401
from annotation.services_screening import annotator_pause, annotator_reinstate, annotator_screen_out  # noqa: F401

# TEMPORARY restructure shim: re-exports annotation.research (agreement, items, process, model_versions, quality, dashboard); the lead removes it after the merge.
"""Old path of the agreement and analysis figures; they live in ``annotation.research``."""

from annotation.dataset.selection import pair_key as _pair_key  # noqa: F401
from annotation.dataset.table import _NO_LABEL, JudgmentRows, JudgmentTable, _flag, _int_matrix, judgment_table, load_rows  # noqa: F401
from annotation.research.agreement import (  # noqa: F401
    MODALITIES,
    NO_BATCH,
    SCORES,
    alpha_from_counts,
    krippendorff_alphas,
    majority_modality,
    modality_agreement,
    rating_distribution,
)
from annotation.research.dashboard import DASHBOARD_CACHE_KEY, dashboard_bundle  # noqa: F401
from annotation.research.items import (  # noqa: F401
    EXTREME_SHIFT,
    SHIFT_NEUTRAL_BAND,
    item_dispersion,
    judgment_shifts,
    text_label_scores,
)
from annotation.research.model_versions import MODEL_METRIC_KEYS, model_metrics  # noqa: F401
from annotation.research.process import collection_progress, disagreement_rates, revision_rates  # noqa: F401
from annotation.research.quality import annotator_quality_summary  # noqa: F401

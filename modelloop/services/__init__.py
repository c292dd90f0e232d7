"""Writes of the model loop, one module per concern: registry, loading, feature_cache,
pg_copy, scoring, queue. Callers (annotation, training, bench) use ``modelloop.services.X``.

This package re-exports what callers use, so no caller needs to know which module holds
it. Tests that patch a name patch it in the module that defines it. No torch or numpy at
import time: web processes import this package and never score.
"""

from ..scoring.batching import OUT_OF_MEMORY
from ..selectors import (  # reads, re-exported for callers that predate modelloop.selectors
    NoCurrentModelVersion,
    model_version_current,
    model_version_current_or_none,
    predictions_for,
    scenario_ids_missing_prediction,
    scoring_inputs_for,
)
from .feature_cache import cached_features, content_key, features_for
from .loading import _load_failures, _scorers, scorer_cache_clear, scorer_for
from .queue import CACHED_CHUNK_SIZE, scenarios_rescore, scoring_enqueue, unscored_sweep
from .registry import (
    model_version_create,
    model_version_for_vlm_path,
    model_version_promote,
    model_version_promote_over_baseline,
    model_version_register,
)
from .scoring import calibration_apply, predictions_store, scenarios_score

__all__ = [
    "CACHED_CHUNK_SIZE",
    "OUT_OF_MEMORY",
    "NoCurrentModelVersion",
    "_load_failures",  # tests/training/test_lora.py clears these; scorer_cache_clear() is the way
    "_scorers",
    "cached_features",
    "calibration_apply",
    "content_key",
    "features_for",
    "model_version_create",
    "model_version_current",
    "model_version_current_or_none",
    "model_version_for_vlm_path",
    "model_version_promote",
    "model_version_promote_over_baseline",
    "model_version_register",
    "predictions_for",
    "predictions_store",
    "scenario_ids_missing_prediction",
    "scenarios_rescore",
    "scenarios_score",
    "scorer_cache_clear",
    "scorer_for",
    "scoring_enqueue",
    "scoring_inputs_for",
    "unscored_sweep",
]

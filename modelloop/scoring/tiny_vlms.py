# TEMPORARY restructure shim: re-exports modelloop.testing.tiny_vlms; the lead removes it after the merge.
"""Moved to ``modelloop.testing.tiny_vlms``: it builds test checkpoints, it is not a scorer."""

from modelloop.testing.tiny_vlms import (  # noqa: F401
    SEED,
    TEXT_HEADS,
    TEXT_HIDDEN,
    TEXT_KV_HEADS,
    TEXT_LAYERS,
    TINY_ARCHS,
    VISION_HEADS,
    VISION_HIDDEN,
    VISION_LAYERS,
    build_tiny_vlm,
)

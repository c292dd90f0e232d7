"""The one rule for a batch that runs out of GPU memory: split it in halves, down to one pair.

Used by the scoring services and by the HF VLM backbone's forward pass. No torch at
module level: web processes import the services, which import this.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

OUT_OF_MEMORY = "out of GPU memory even at batch size 1"


def halve_on_oom(call: Callable[[list[T]], list[R]], batch: list[T], fail_one: Callable[[T], R]) -> list[R]:
    """``call(batch)``; on CUDA out-of-memory, each half again, down to single pairs.

    A pair that does not fit even alone fails by itself (``fail_one``). The retry runs
    outside the ``except`` block so the failed attempt's tensors are freed first.
    """
    import torch

    try:
        return call(batch)
    except torch.cuda.OutOfMemoryError:
        pass
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if len(batch) == 1:
        logger.warning("Out of GPU memory on a single pair; it is marked failed.")
        return [fail_one(batch[0])]
    half = len(batch) // 2
    logger.info("Out of GPU memory at batch size %d; retrying in halves.", len(batch))
    return halve_on_oom(call, batch[:half], fail_one) + halve_on_oom(call, batch[half:], fail_one)

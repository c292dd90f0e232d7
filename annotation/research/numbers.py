"""JSON-friendly numbers, the one rule every figure of annotation.research follows:
None for an undefined value. Imported by the modules of this package only."""

from __future__ import annotations

import math


def json_number(x) -> float | None:
    """A JSON-friendly float: None for NaN/inf/None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def ratio(part, whole) -> float | None:
    """part / whole as a float; None when whole is 0 (a share of nothing is undefined)."""
    return float(part) / float(whole) if whole else None

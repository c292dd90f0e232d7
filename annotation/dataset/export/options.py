"""What an export includes (``ExportOptions``), with defaults from the ``MORALE_EXPORT_*``
settings; each export records the options it used. See docs/dataset-export.md."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from django.conf import settings

from ..format import SOURCES


@dataclass(frozen=True)
class ExportOptions:
    """What an export includes; defaults come from the ``MORALE_EXPORT_*`` settings."""

    source: str
    max_sd: float | None
    include_screened: bool
    include_canaries: bool
    include_imported: bool  # imported ratings and aggregates (annotation.models.ImportedRating)
    split_seed: str
    test_fraction: float
    chunk_size: int
    # Only these contexts (e.g. the admin's "export selected contexts"); None: all.
    context_ids: tuple[int, ...] | None = None

    @classmethod
    def from_settings(cls, **overrides) -> ExportOptions:
        """Settings, with ``overrides`` (keyword names as the fields) taking precedence.

        Raises TypeError for an unknown name, ValueError for a bad value.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown export option(s): {', '.join(unknown)} (known: {', '.join(sorted(names))})")
        values = {
            "source": settings.MORALE_EXPORT_SOURCE,
            "max_sd": settings.MORALE_EXPORT_MAX_SD,
            "include_screened": settings.MORALE_EXPORT_INCLUDE_SCREENED,
            "include_canaries": settings.MORALE_EXPORT_INCLUDE_CANARIES,
            "include_imported": settings.MORALE_EXPORT_INCLUDE_IMPORTED,
            "split_seed": settings.MORALE_EXPORT_SPLIT_SEED,
            "test_fraction": settings.MORALE_EXPORT_TEST_FRACTION,
            "chunk_size": settings.MORALE_EXPORT_CHUNK_SIZE,
            "context_ids": None,
        }
        values.update(overrides)
        if isinstance(values["context_ids"], (list, set, frozenset)):
            values["context_ids"] = tuple(sorted(values["context_ids"]))
        options = cls(**values)
        options.check()
        return options

    def check(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {self.source!r}")
        if self.max_sd is not None and (
            isinstance(self.max_sd, bool)
            or not isinstance(self.max_sd, (int, float))
            or not 0 <= self.max_sd < math.inf  # NaN and infinity are not JSON: the record stores options
        ):
            raise ValueError(f"max_sd must be a number >= 0 or None (no sd filter), not {self.max_sd!r}")
        if isinstance(self.test_fraction, bool) or not isinstance(self.test_fraction, (int, float)) or not (
            0 <= self.test_fraction <= 1
        ):
            raise ValueError(f"test_fraction must be between 0 and 1, not {self.test_fraction!r}")
        if not isinstance(self.chunk_size, int) or isinstance(self.chunk_size, bool) or self.chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive whole number, not {self.chunk_size!r}")
        for name in ("include_screened", "include_canaries", "include_imported"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, not {getattr(self, name)!r}")
        if not isinstance(self.split_seed, str):
            raise ValueError(f"split_seed must be text, not {self.split_seed!r}")
        if self.context_ids is not None and (
            not isinstance(self.context_ids, tuple)
            or not self.context_ids
            or any(isinstance(i, bool) or not isinstance(i, int) or i < 1 for i in self.context_ids)
        ):
            raise ValueError("context_ids must be a non-empty list of context ids, or None for all contexts")

"""Export file -> training lists: ``ListData`` with cached backbone features (mode head) or
``ImageList``s of images and texts (mode lora).

Everything about the lists (targets, splits) comes from the export file alone, never from
the live judgment tables, so a run is reproducible from its export.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from django.core.files.storage import default_storage

from annotation.dataset.format import iter_export
from modelloop import services as modelloop_services
from morale import jobs

from .losses import IGNORE_MODALITY
from .lists import MODALITIES, ImageList, ListData, TrainingDataError, offsets_of

T = TypeVar("T")


def _modality(scenario: dict) -> int:
    """The majority modality's index; IGNORE_MODALITY where none is known (imported ratings
    without a modality, pre-aggregated scores only)."""
    majority = scenario["majority_modality"]
    return IGNORE_MODALITY if majority is None else MODALITIES.index(majority)


def _initial_scores(scenario: dict) -> list[float]:
    """The scenario's individual initial 1-5 scores: the judgments the model's score is
    compared with for a grounding check (pre-aggregated imports have none)."""
    return [float(j["score"]) for j in scenario["judgments"] if j["phase"] == "initial"]


def _lists_by_split(path: str, make: Callable[[dict], T]) -> tuple[dict[str, list[T]], int]:
    """``make(record)`` of every export record with two or more scenarios, by split, and the
    number of lists of one left out. TrainingDataError when no list is left."""
    lists: dict[str, list[T]] = {"train": [], "test": []}
    skipped = 0
    for record in iter_export(path):
        if len(record["scenarios"]) < 2:
            skipped += 1
            continue
        lists[record["split"]].append(make(record))
    if not lists["train"] and not lists["test"]:
        raise TrainingDataError(f"the export has no list of two or more scenarios ({skipped} list(s) of one left out)")
    return lists, skipped


@dataclass
class ExportLists:
    train: ListData
    test: ListData
    skipped_single: int  # lists of one scenario: nothing to rank, left out


def lists_from_export(*, path: str, backbone) -> ExportLists:
    """Read an export and attach each scenario's backbone features.

    The lists, their targets and splits come from the export file alone. Features come
    from the feature cache, keyed by the scenario and a hash of its image, setting and
    text, so they are those of the content the annotators saw. Raises TrainingDataError
    when a scenario's features cannot be computed (a missing image file, a corrupt image):
    the message names the scenarios and the reasons.
    """
    lists, skipped = _lists_by_split(
        path,
        lambda record: (
            record["context_id"],
            [(s["scenario_id"], float(s["mean"]), _modality(s), _initial_scores(s)) for s in record["scenarios"]],
        ),
    )
    ids = [item[0] for split in lists.values() for _, lst in split for item in lst]
    # A heartbeat per extracted batch: a run computing features for an hour is not stale.
    features, errors = modelloop_services.features_for(backbone, ids, on_batch=jobs.beat_current)
    failed = [(sid, error) for sid, error in zip(ids, errors) if error]
    if failed:
        shown = "; ".join(f"scenario #{sid}: {error}" for sid, error in failed[:5])
        raise TrainingDataError(f"{len(failed)} scenario(s) have no features: {shown}")
    row_of = {sid: row for row, sid in enumerate(ids)}

    def build(split_lists) -> ListData:
        flat = [item for _, lst in split_lists for item in lst]
        return ListData(
            features=features[torch.tensor([row_of[item[0]] for item in flat], dtype=torch.long)],
            targets=torch.tensor([item[1] for item in flat], dtype=torch.float32),
            modality=torch.tensor([item[2] for item in flat], dtype=torch.long),
            offsets=offsets_of([len(lst) for _, lst in split_lists]),
            scenario_ids=[item[0] for item in flat],
            context_ids=[context for context, _ in split_lists],
            judgments=[item[3] for item in flat],
        )

    return ExportLists(train=build(lists["train"]), test=build(lists["test"]), skipped_single=skipped)


def _image_list(record: dict) -> ImageList:
    scenarios = record["scenarios"]
    return ImageList(
        context_id=record["context_id"],
        image_path=default_storage.path(record["image_path"]),
        setting=record["setting"],
        texts=[s["text"] for s in scenarios],
        targets=[float(s["mean"]) for s in scenarios],
        modality=[_modality(s) for s in scenarios],
        scenario_ids=[s["scenario_id"] for s in scenarios],
    )


@dataclass
class ExportImageLists:
    train: list[ImageList]
    test: list[ImageList]
    skipped_single: int  # lists of one scenario: nothing to rank, left out


def image_lists_from_export(*, path: str) -> ExportImageLists:
    """Read an export into per-context lists of image, setting, texts and mean scores (mode lora).

    Image paths are the export's, in the default storage (``MEDIA_ROOT``). Raises
    TrainingDataError when no list has two scenarios. Unreadable images are found by
    ``train_lora``, before it loads the model.
    """
    lists, skipped = _lists_by_split(path, _image_list)
    return ExportImageLists(train=lists["train"], test=lists["test"], skipped_single=skipped)

"""The feature cache of frozen backbones: bulk reads, upserts, and ``features_for``.

A ``FeatureScorer``'s backbone vector of each scenario is stored per (``backbone_ref``,
scenario) with the content key it was computed from (``models.content_key``), so head
retraining and rescoring never run the backbone again. Used by scoring and by training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection

from annotation.models import Context, Scenario

from ..models import FeatureCacheEntry, ImageFeatureCacheEntry, content_key
from ..scoring import FeatureScorer, ScoringInput
from ..scoring.batching import OUT_OF_MEMORY, halve_on_oom
from ..selectors import scoring_pairs
from .pg_copy import copy_rows

if TYPE_CHECKING:
    import numpy as np
    import torch

# The error of an id whose scenario no longer exists (deleted since it was queued).
SCENARIO_NOT_FOUND = "scenario not found"
# Scenario ids per query in cached_features: below SQLite's limit of 32766 variables.
_IDS_PER_QUERY = 10_000


def cached_features(backbone_ref: str, scenario_ids: Sequence[int], dim: int) -> tuple[list[int], np.ndarray]:
    """The cached, still valid ``dim``-d vectors of these scenarios: (scenario ids, float32 [k, dim]).

    Built for bulk reads (a full rescore reads every scenario): no model instances, one
    ``frombuffer`` over the joined bytes. Stale entries (content changed) and scenarios
    without an entry are left out. Rows come from ``_cache_rows``.
    """
    import numpy as np

    found: list[int] = []
    blobs: list[bytes] = []
    nbytes = 4 * dim
    for scenario_id, key, image_sha256, setting, text, vector in _cache_rows(backbone_ref, list(scenario_ids), dim):
        if len(vector) == nbytes and key == content_key(image_sha256, setting, text):
            found.append(scenario_id)
            blobs.append(vector)
    matrix = np.frombuffer(bytearray().join(blobs), dtype="<f4").reshape(len(found), dim)
    return found, matrix.astype(np.float32, copy=False)


def cached_scenario_ids(backbone_ref: str) -> set[int]:
    """Scenarios with an entry for this backbone (stale or not): what a rescore can send head-only."""
    if not backbone_ref:
        return set()
    return set(FeatureCacheEntry.objects.filter(backbone_ref=backbone_ref).values_list("scenario_id", flat=True))


def _cache_rows(backbone_ref: str, ids: list[int], dim: int) -> Iterable[tuple[int, str, str, str, str, bytes]]:
    """(scenario id, content key, image sha256, setting, text, vector bytes) of the cache entries.

    PostgreSQL: one binary ``COPY`` (``pg_copy``). Its text protocol sends bytea
    hex-encoded, and decoding that was 1.7 of the 4-5 s a 32k-scenario rescore took;
    binary COPY reads the same rows in 0.5 s. SQLite: ``values_list``, one query per
    10,000 ids (its limit on query variables).
    """
    if not ids:
        return
    if connection.vendor == "postgresql":
        cache, scenario, context = (
            connection.ops.quote_name(model._meta.db_table) for model in (FeatureCacheEntry, Scenario, Context)
        )
        # A join with the unnested ids, not "scenario_id = ANY(ids)": with the statistics of
        # a table filled moments ago, the planner filtered every entry of the backbone
        # against the whole id list (0.5 s per 4096 ids).
        sql = (
            f"SELECT c.scenario_id, c.content_key, x.image_sha256, x.setting, s.text, c.vector "
            f"FROM unnest(%s::bigint[]) AS q(id) "
            f"JOIN {cache} c ON c.backbone_ref = %s AND c.dim = %s AND c.scenario_id = q.id "
            f"JOIN {scenario} s ON s.id = c.scenario_id JOIN {context} x ON x.id = s.context_id"
        )
        for scenario_id, *texts, vector in copy_rows(sql, [ids, backbone_ref, dim]):
            key, image_sha256, setting, text = (str(value, "utf-8") for value in texts)
            yield int.from_bytes(scenario_id, "big", signed=True), key, image_sha256, setting, text, vector
        return
    for start in range(0, len(ids), _IDS_PER_QUERY):
        yield from FeatureCacheEntry.objects.filter(
            backbone_ref=backbone_ref, dim=dim, scenario_id__in=ids[start : start + _IDS_PER_QUERY]
        ).values_list(
            "scenario_id",
            "content_key",
            "scenario__context__image_sha256",
            "scenario__context__setting",
            "scenario__text",
            "vector",
        )


def _cache_store(backbone_ref: str, rows: Sequence[tuple[int, str, torch.Tensor]]) -> None:
    """Upsert (scenario id, content key, vector) rows; a stale entry is overwritten."""
    entries = [
        FeatureCacheEntry(
            backbone_ref=backbone_ref,
            scenario_id=scenario_id,
            content_key=key,
            dim=vector.numel(),
            vector=vector.detach().float().cpu().numpy().astype("<f4").tobytes(),
        )
        for scenario_id, key, vector in rows
    ]
    if entries:
        FeatureCacheEntry.objects.bulk_create(
            entries,
            update_conflicts=True,
            unique_fields=["backbone_ref", "scenario"],
            update_fields=["content_key", "dim", "vector", "computed_at"],
        )


class ImageFeatureCache:
    """The image feature cache of one ``features_for`` call (``scoring.features.ImageFeatureStore``):
    entries per (image backbone, image sha256) in ``ImageFeatureCacheEntry``, read in bulk
    per batch, written as each batch finishes, and kept in memory for the rest of the call
    (so an image whose scenarios span two batches is encoded once)."""

    def __init__(self, backbone_ref: str, dim: int, sha_of_path: dict[str, str]) -> None:
        self.backbone_ref, self.dim, self.sha_of_path = backbone_ref, dim, sha_of_path
        self.memory: dict[str, torch.Tensor] = {}

    def key_of(self, image_path: str) -> str | None:
        return self.sha_of_path.get(image_path) or None

    def get(self, keys: Sequence[str]) -> dict[str, torch.Tensor]:
        import numpy as np
        import torch

        found = {key: self.memory[key] for key in keys if key in self.memory}
        wanted = [key for key in dict.fromkeys(keys) if key not in found]
        nbytes = 4 * self.dim
        for start in range(0, len(wanted), _IDS_PER_QUERY):
            rows = ImageFeatureCacheEntry.objects.filter(
                backbone_ref=self.backbone_ref, dim=self.dim, image_sha256__in=wanted[start : start + _IDS_PER_QUERY]
            ).values_list("image_sha256", "vector")
            for key, vector in rows:
                if len(vector) == nbytes:
                    found[key] = torch.from_numpy(np.frombuffer(bytes(vector), dtype="<f4").astype(np.float32))
        self.memory.update(found)
        return found

    def put(self, vectors: dict[str, torch.Tensor]) -> None:
        self.memory.update(vectors)
        entries = [
            ImageFeatureCacheEntry(
                backbone_ref=self.backbone_ref,
                image_sha256=key,
                dim=vector.numel(),
                vector=vector.detach().float().cpu().numpy().astype("<f4").tobytes(),
            )
            for key, vector in vectors.items()
        ]
        if entries:
            ImageFeatureCacheEntry.objects.bulk_create(
                entries,
                update_conflicts=True,
                unique_fields=["backbone_ref", "image_sha256"],
                update_fields=["dim", "vector", "computed_at"],
            )


def _image_sha256_of(scenario_ids: Sequence[int]) -> dict[int, str]:
    rows: dict[int, str] = {}
    for start in range(0, len(scenario_ids), _IDS_PER_QUERY):
        rows.update(
            Scenario.objects.filter(pk__in=scenario_ids[start : start + _IDS_PER_QUERY]).values_list(
                "pk", "context__image_sha256"
            )
        )
    return rows


def features_for(
    scorer: FeatureScorer, scenario_ids: Sequence[int], on_batch: Callable[[], None] | None = None
) -> tuple[torch.Tensor, list[str]]:
    """Backbone features [n, feature_dim] of these scenarios and one error per id ("" when fine).

    ``scorer`` needs only ``backbone_ref``, ``feature_dim`` and ``features()``: training
    passes a bare backbone (``offline.EfficientNetMiniLMBackbone``) before any head exists.

    Cached vectors are read in bulk; the rest go through ``scorer.features`` in batches of
    ``MORALE_SCORER_BATCH_SIZE`` (halved on CUDA out-of-memory) and are cached as each
    batch finishes, so a task cut short by its time limit keeps what it computed. Failed
    pairs are not cached: a fixed image is tried again. An id whose scenario no longer
    exists gets the error ``SCENARIO_NOT_FOUND``. ``on_batch``, if given, is called after each
    computed batch (a training run's heartbeat).

    Each distinct image is encoded once: the pairs to compute are grouped by image (sha256)
    before they are cut into batches, and the image features are cached per (image
    backbone, image sha256) in ``ImageFeatureCacheEntry`` (``ImageFeatureCache``), so a
    new scenario of a known image, or a changed text, never runs the image encoder again.
    """
    import torch

    from ..scoring.features import IMAGE_BACKBONE_REF, IMAGE_DIM, image_features_from

    ids = list(scenario_ids)
    row_of = {scenario_id: row for row, scenario_id in enumerate(ids)}
    features = torch.zeros(len(ids), scorer.feature_dim)
    errors = [SCENARIO_NOT_FOUND] * len(ids)
    found, matrix = cached_features(scorer.backbone_ref, ids, scorer.feature_dim)
    if found:
        rows = [row_of[scenario_id] for scenario_id in found]
        features[rows] = torch.from_numpy(matrix)
        for row in rows:
            errors[row] = ""

    hit = set(found)
    pairs = scoring_pairs(scenario_ids=[scenario_id for scenario_id in ids if scenario_id not in hit])
    sha_of = _image_sha256_of([item.scenario_id for item, _ in pairs])
    pairs.sort(key=lambda pair: (sha_of.get(pair[0].scenario_id, ""), pair[0].scenario_id))  # one image, one batch
    images = ImageFeatureCache(
        IMAGE_BACKBONE_REF,
        IMAGE_DIM,
        {item.image_path: sha_of[item.scenario_id] for item, _ in pairs if sha_of.get(item.scenario_id)},
    )

    def run(batch: list[tuple[ScoringInput, str]]) -> list[tuple[torch.Tensor | None, str]]:
        with image_features_from(images):
            values, batch_errors = scorer.features([item for item, _ in batch])
        return list(zip(values, batch_errors))

    for start in range(0, len(pairs), settings.MORALE_SCORER_BATCH_SIZE):
        batch = pairs[start : start + settings.MORALE_SCORER_BATCH_SIZE]
        outputs = halve_on_oom(run, batch, lambda pair: (None, OUT_OF_MEMORY))
        to_cache = []
        for (item, key), (vector, error) in zip(batch, outputs):
            row = row_of[item.scenario_id]
            errors[row] = error
            if not error:
                features[row] = vector
                to_cache.append((item.scenario_id, key, vector))
        _cache_store(scorer.backbone_ref, to_cache)
        if on_batch is not None:
            on_batch()
    return features, errors

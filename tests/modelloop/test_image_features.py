"""Each distinct image encoded once (issue 16): within a batch the pairs are grouped by
image, and image features are cached per (image backbone, image sha256) beside the pair
cache. The real EfficientNet-Lite0 + MiniLM backbones on real image files; the spy counts
the images that go through the real image encoder and changes nothing it returns."""

import io

import pytest
import torch
from django.core.files.base import ContentFile
from PIL import Image

from annotation import services as annotation_services
from modelloop import services
from modelloop.models import FeatureCacheEntry, ImageFeatureCacheEntry
from modelloop.scoring import features as features_module
from modelloop.scoring.features import IMAGE_BACKBONE_REF, IMAGE_DIM, extract_features
from modelloop.scoring.offline import EfficientNetMiniLMBackbone

pytestmark = pytest.mark.django_db


def png(seed: int) -> ContentFile:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (96, 128, 3), dtype=torch.uint8, generator=generator)
    buffer = io.BytesIO()
    Image.fromarray(pixels.numpy()).save(buffer, format="PNG")
    return ContentFile(buffer.getvalue(), name=f"img{seed}.png")


def context_with(seed: int, n: int):
    context = annotation_services.context_create(image_file=png(seed), setting=f"a street scene number {seed}")
    scenarios = [annotation_services.scenario_create(context=context, text=f"action {i} here") for i in range(n)]
    return context, scenarios


@pytest.fixture
def encoded(monkeypatch):
    """How many images each call of the real image encoder was given."""
    calls: list[int] = []
    real = features_module.encode_images

    def spy(pixels):
        calls.append(len(pixels))
        return real(pixels)

    monkeypatch.setattr(features_module, "encode_images", spy)
    return calls


def test_n_scenarios_of_one_image_run_the_image_encoder_once(encoded):
    _, street = context_with(1, 4)
    _, bus = context_with(2, 3)
    ids = [s.pk for s in street + bus]
    features, errors = services.features_for(EfficientNetMiniLMBackbone(), ids)
    assert errors == [""] * 7
    assert sum(encoded) == 2  # two distinct images for seven pairs
    assert ImageFeatureCacheEntry.objects.filter(backbone_ref=IMAGE_BACKBONE_REF, dim=IMAGE_DIM).count() == 2
    assert FeatureCacheEntry.objects.count() == 7
    # The scenarios of one image share its image half; their text halves differ.
    assert torch.equal(features[0, :IMAGE_DIM], features[3, :IMAGE_DIM])
    assert not torch.equal(features[0, IMAGE_DIM:], features[1, IMAGE_DIM:])
    assert not torch.equal(features[0, :IMAGE_DIM], features[4, :IMAGE_DIM])
    # ...and equal what the backbone computes for each pair alone, without any cache.
    alone = torch.cat([extract_features(services.scoring_inputs_for(scenario_ids=[i]))[0] for i in ids])
    assert torch.allclose(features, alone, atol=1e-5)


def test_one_batch_groups_its_pairs_by_image_without_a_cache(encoded):
    _, street = context_with(3, 3)
    _, bus = context_with(4, 2)
    inputs = services.scoring_inputs_for(scenario_ids=[street[0].pk, bus[0].pk, street[1].pk, bus[1].pk, street[2].pk])
    features, errors = extract_features(inputs)
    assert errors == [""] * 5 and encoded == [2]
    assert torch.equal(features[0, :IMAGE_DIM], features[2, :IMAGE_DIM])


def test_cached_image_features_are_reused_across_calls(encoded, settings):
    context, first = context_with(5, 2)
    services.features_for(EfficientNetMiniLMBackbone(), [s.pk for s in first])
    assert sum(encoded) == 1
    added = annotation_services.scenario_create(context=context, text="a new action in the same image")
    encoded.clear()
    features, errors = services.features_for(EfficientNetMiniLMBackbone(), [added.pk])
    assert errors == [""] and encoded == []  # the image's features came from the cache
    fresh, _ = extract_features(services.scoring_inputs_for(scenario_ids=[added.pk]))
    assert torch.allclose(features, fresh, atol=1e-5)
    # Across batches of one call too: an image whose pairs span two batches is encoded once.
    settings.MORALE_SCORER_BATCH_SIZE = 2
    _, many = context_with(6, 5)
    encoded.clear()
    services.features_for(EfficientNetMiniLMBackbone(), [s.pk for s in many])
    assert sum(encoded) == 1


def test_changing_the_image_invalidates_its_features(encoded):
    context, scenarios = context_with(7, 2)
    ids = [s.pk for s in scenarios]
    before, _ = services.features_for(EfficientNetMiniLMBackbone(), ids)
    annotation_services.context_update(context=context, new_image=png(8))
    encoded.clear()
    after, errors = services.features_for(EfficientNetMiniLMBackbone(), ids)
    assert errors == ["", ""] and encoded == [1]  # the new image, once for both scenarios
    assert not torch.allclose(before[:, :IMAGE_DIM], after[:, :IMAGE_DIM])
    assert torch.allclose(before[:, IMAGE_DIM:], after[:, IMAGE_DIM:], atol=1e-6)  # same texts
    context.refresh_from_db()
    assert ImageFeatureCacheEntry.objects.filter(image_sha256=context.image_sha256).count() == 1
    fresh, _ = extract_features(services.scoring_inputs_for(scenario_ids=ids))
    assert torch.allclose(after, fresh, atol=1e-5)


def test_a_broken_image_fails_its_pairs_and_is_not_cached(encoded):
    context, scenarios = context_with(9, 2)
    with open(context.image.path, "r+b") as handle:
        handle.truncate(60)
    _, fine = context_with(10, 1)
    features, errors = services.features_for(EfficientNetMiniLMBackbone(), [s.pk for s in scenarios + fine])
    assert "corrupt or truncated image" in errors[0] and "corrupt or truncated image" in errors[1] and errors[2] == ""
    assert not features[:2].any()
    assert list(ImageFeatureCacheEntry.objects.values_list("image_sha256", flat=True)) == [fine[0].context.image_sha256]

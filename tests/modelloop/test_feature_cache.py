"""The feature cache of frozen backbones: filled on first scoring, read in bulk, stale when
the image, setting, text or backbone change; a promoted head with the same backbone never
runs it. Real EfficientNet-Lite0 + MiniLM backbones, real image files."""

import io

import numpy as np
import pytest
import torch
from django.core.files.base import ContentFile
from PIL import Image

from annotation import services as annotation_services
from modelloop import services, tasks
from modelloop.models import FeatureCacheEntry, ModelVersion, Prediction
from modelloop.scoring.features import BACKBONE_REF, FEATURE_DIM
from modelloop.scoring.offline import EfficientNetMiniLMHeadScorer, ScoreHead, extract_features, save_head
from modelloop.services.scoring import _score_with_features
from tests.factories import make_context

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_scorer_cache")]



def photo_context(setting: str, seed: int):
    """A context whose image is a noisy photo-sized PNG (distinct per seed)."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (120, 160, 3), dtype=torch.uint8, generator=generator)
    buffer = io.BytesIO()
    Image.fromarray(pixels.numpy()).save(buffer, format="PNG")
    return annotation_services.context_create(image_file=ContentFile(buffer.getvalue(), name=f"p{seed}.png"), setting=setting)


@pytest.fixture
def scenarios():
    street = photo_context("a child crossing a busy street", seed=1)
    bus = photo_context("an elderly man at a bus stop", seed=2)
    return [
        annotation_services.scenario_create(context=street, text="holding the child's hand"),
        annotation_services.scenario_create(context=street, text="pushing the child into the traffic"),
        annotation_services.scenario_create(context=bus, text="offering him your seat"),
        annotation_services.scenario_create(context=bus, text="stealing his wallet"),
    ]


def head_version(name: str, seed: int, tmp_path):
    torch.manual_seed(seed)
    head = ScoreHead()
    path = tmp_path / f"{name}.safetensors"
    save_head(head.eval(), path)
    version = services.model_version_register(
        name=name, scorer="efficientnet-minilm-mlp", config={}, head_weights_path=path
    )
    return version, head


@pytest.fixture
def count_backbone_calls(monkeypatch):
    """Counts the pairs the real backbone is run on."""
    seen: list[int] = []
    original = EfficientNetMiniLMHeadScorer.features

    def counting(self, inputs):
        seen.extend(item.scenario_id for item in inputs)
        return original(self, inputs)

    monkeypatch.setattr(EfficientNetMiniLMHeadScorer, "features", counting)
    return seen


def run_promotion(version, monkeypatch, django_capture_on_commit_callbacks):
    """Promote and run the queued tasks in-process, as a worker would; returns their payloads."""
    sent = []
    monkeypatch.setattr(tasks.score_scenarios, "apply_async", lambda kwargs, **_: sent.append(kwargs))
    with django_capture_on_commit_callbacks(execute=True):
        services.model_version_promote(model_version=version)
    for kwargs in sent:
        tasks.score_scenarios.run(**kwargs)
    return sent


def test_promoting_a_head_with_the_same_frozen_backbone_runs_only_the_head(
    scenarios, tmp_path, monkeypatch, django_capture_on_commit_callbacks, count_backbone_calls
):
    ids = [s.pk for s in scenarios]
    first, _ = head_version("head-a", 0, tmp_path)
    assert first.backbone_ref == BACKBONE_REF  # known at registration: the backbone is fixed
    run_promotion(first, monkeypatch, django_capture_on_commit_callbacks)
    assert sorted(count_backbone_calls) == ids  # first time: every pair through the backbone once
    assert FeatureCacheEntry.objects.filter(backbone_ref=BACKBONE_REF).count() == 4

    second, head = head_version("head-b", 1, tmp_path)
    count_backbone_calls.clear()
    sent = run_promotion(second, monkeypatch, django_capture_on_commit_callbacks)
    assert count_backbone_calls == []  # head only
    assert sent == [{"scenario_ids": ids, "model_version_id": second.pk}]  # one head-only chunk

    # ...and the scores are exactly what the new head gives on freshly computed features.
    inputs = services.scoring_inputs_for(scenario_ids=ids)
    features, errors = extract_features(inputs)
    assert errors == [""] * 4
    with torch.inference_mode():
        expected = head(features)
    stored = dict(Prediction.objects.filter(model_version=second).values_list("scenario_id", "score"))
    assert torch.allclose(torch.tensor([stored[i] for i in ids]), expected, atol=1e-5)
    first_scores = dict(Prediction.objects.filter(model_version=first).values_list("scenario_id", "score"))
    assert first_scores != stored


def test_cache_entry_goes_stale_when_text_image_or_setting_change(scenarios, tmp_path, count_backbone_calls):
    version, _ = head_version("head-a", 0, tmp_path)
    scorer = services.scorer_for(version)
    ids = [s.pk for s in scenarios]
    services.features_for(scorer, ids)
    assert sorted(count_backbone_calls) == ids

    text_changed, image_changed, setting_changed = scenarios[0], scenarios[2], scenarios[1]
    text_changed.text = "letting go of the child's hand"
    text_changed.save()
    bus = image_changed.context
    bus.image_sha256 = "0" * 64  # as if the file had been replaced
    bus.save()
    count_backbone_calls.clear()
    services.features_for(scorer, ids)
    assert sorted(count_backbone_calls) == sorted([text_changed.pk, image_changed.pk, scenarios[3].pk])

    street = setting_changed.context
    street.setting = "a child crossing a quiet street"
    street.save()
    count_backbone_calls.clear()
    features, errors = services.features_for(scorer, ids)
    assert sorted(count_backbone_calls) == sorted([scenarios[0].pk, scenarios[1].pk])
    assert errors == [""] * 4
    assert FeatureCacheEntry.objects.count() == 4  # stale entries were overwritten, not duplicated

    # What is cached is what the backbone computes for the current inputs.
    fresh, _ = extract_features(services.scoring_inputs_for(scenario_ids=ids))
    assert torch.allclose(features, fresh, atol=1e-5)  # equal up to batch-size numerics


def test_another_backbone_ref_never_sees_the_entries(scenarios):
    ids = [s.pk for s in scenarios]
    vector = np.arange(FEATURE_DIM, dtype=np.float32)
    FeatureCacheEntry.objects.create(
        backbone_ref="other-backbone:v1",
        scenario=scenarios[0],
        content_key=services.content_key(scenarios[0].context.image_sha256, scenarios[0].context.setting, scenarios[0].text),
        dim=FEATURE_DIM,
        vector=vector.tobytes(),
    )
    assert services.cached_features(BACKBONE_REF, ids, FEATURE_DIM)[0] == []
    found, matrix = services.cached_features("other-backbone:v1", ids, FEATURE_DIM)
    assert found == [scenarios[0].pk]
    assert matrix.dtype == np.float32 and matrix.flags.writeable
    assert np.array_equal(matrix[0], vector)  # float32, bit-exact
    assert services.cached_features("other-backbone:v1", ids, FEATURE_DIM + 1)[0] == []  # wrong width: a miss


def test_a_corrupt_image_fails_its_pairs_alone_and_is_not_cached(scenarios, tmp_path):
    """A real image file damaged on disk after upload: its pairs fail with the reason, the rest score."""
    bus = scenarios[2].context
    with open(bus.image.path, "r+b") as handle:
        handle.truncate(60)  # a PNG cut short
    version, _ = head_version("head-a", 0, tmp_path)
    ids = [s.pk for s in scenarios]
    assert services.scenarios_score(scenario_ids=ids, model_version=version) == 4

    predictions = {p.scenario_id: p for p in Prediction.objects.filter(model_version=version)}
    for scenario in scenarios[:2]:
        assert predictions[scenario.pk].status == "ok" and 1 <= predictions[scenario.pk].score <= 5
    for scenario in scenarios[2:]:
        assert predictions[scenario.pk].status == "failed"
        assert "corrupt or truncated image" in predictions[scenario.pk].error
    assert set(FeatureCacheEntry.objects.values_list("scenario_id", flat=True)) == {s.pk for s in scenarios[:2]}


def test_cached_and_uncached_scoring_agree_with_the_scorer(scenarios, tmp_path):
    version, _ = head_version("head-a", 0, tmp_path)
    scorer = services.scorer_for(version)
    ids = [s.pk for s in scenarios]
    direct = [r.score for r in scorer.score(services.scoring_inputs_for(scenario_ids=ids))]
    services.features_for(scorer, ids[:2])  # half cached, half not
    results = _score_with_features(scorer, ids)
    assert [r.scenario_id for r in results] == ids
    assert torch.allclose(torch.tensor([r.score for r in results]), torch.tensor(direct), atol=1e-5)


def test_features_for_a_deleted_scenario_are_an_error_not_a_crash(tmp_path):
    context = make_context()
    scenario = annotation_services.scenario_create(context=context, text="waving hello")
    version, _ = head_version("head-a", 0, tmp_path)
    features, errors = services.features_for(services.scorer_for(version), [scenario.pk, 987654])
    assert errors == ["", "scenario not found"]
    assert features.shape == (2, FEATURE_DIM) and not features[1].any()


def test_sweeper_sends_cached_scenarios_in_head_only_chunks(scenarios, tmp_path, monkeypatch, django_capture_on_commit_callbacks, settings):
    settings.MORALE_SCORER_BATCH_SIZE = 1
    version, _ = head_version("head-a", 0, tmp_path)
    scorer = services.scorer_for(version)
    services.features_for(scorer, [s.pk for s in scenarios[:3]])
    ModelVersion.objects.filter(is_current=True).update(is_current=False)
    ModelVersion.objects.filter(pk=version.pk).update(is_current=True)
    sent = []
    monkeypatch.setattr(tasks.score_scenarios, "apply_async", lambda kwargs, **_: sent.append(kwargs))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.unscored_sweep() == 4
    assert [k["scenario_ids"] for k in sent] == [[s.pk for s in scenarios[:3]], [scenarios[3].pk]]


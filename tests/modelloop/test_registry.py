"""The model registry: a version's files live in storage and reload to the same scores; its
calibration is applied; a LoRA adapter travels as a zip; MORALE_VLM_PATH puts a VLM
checkpoint in the loop. Real photographs (scikit-image) and tiny real-architecture VLMs."""

import io
import os
from pathlib import Path

import pytest
import torch
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from PIL import Image
from skimage import data as skimage_data

from annotation import services as annotation_services
from modelloop import services, tasks, worker
from modelloop.baseline import BASELINE_NAME
from modelloop.models import ModelVersion, Prediction
from modelloop.scoring import Scorer, ScoringError, ScoringResult, scorer_registry
from modelloop.scoring.hf_vlm import HFVLMHeadScorer, apply_lora, load_vlm, save_lora
from modelloop.scoring.offline import ScoreHead, extract_features, save_head
from modelloop.testing.tiny_vlms import TEXT_HIDDEN, build_tiny_vlm
from tests.factories import current_version, make_context, make_scenarios

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("fresh_scorer_cache"),
    # peft calls a transformers method that transformers 5 deprecates; not ours to fix.
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]



@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory) -> Path:
    return build_tiny_vlm("qwen2_vl", tmp_path_factory.mktemp("tiny") / "Qwen2-VL-tiny")


def photo_scenarios() -> list:
    """Scenarios on real photographs shipped with scikit-image, stored as JPEG uploads."""
    scenarios = []
    for image, setting, texts in [
        (skimage_data.astronaut(), "an astronaut posing for a portrait", ["smiling for the camera", "spitting at the photographer"]),
        (skimage_data.chelsea(), "a cat resting at home", ["gently stroking the cat", "kicking the cat"]),
        (skimage_data.coffee(), "a cup of coffee on a table", ["offering the coffee to a guest", "spitting into the guest's coffee"]),
    ]:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=90)
        context = annotation_services.context_create(image_file=ContentFile(buffer.getvalue(), name="photo.jpg"), setting=setting)
        scenarios += [annotation_services.scenario_create(context=context, text=text) for text in texts]
    return scenarios


def test_the_registry_knows_the_hugging_face_scorers():
    assert {"hf-vlm-head", "hf-vlm-zero-shot"} <= set(scorer_registry())


def test_a_registered_version_reloads_from_storage_to_the_same_scores(tmp_path):
    scenarios = photo_scenarios()
    torch.manual_seed(3)
    head = ScoreHead(hidden=64).eval()
    trained = tmp_path / "trained-head.safetensors"
    save_head(head, trained)
    version = services.model_version_register(
        name="effnet-head-v1",
        scorer="efficientnet-minilm-mlp",
        config={"hidden": 64},
        head_weights_path=trained,
        description="trained on export #1",
    )
    os.remove(trained)  # the version owns a copy in storage (MEDIA_ROOT), not the training run's file
    assert version.head_weights.name.startswith("model_versions/effnet-head-v1")

    ids = [s.pk for s in scenarios]
    reloaded = ModelVersion.objects.get(pk=version.pk)  # as a worker on another host sees it
    assert services.scenarios_score(scenario_ids=ids, model_version=reloaded) == len(ids)

    features, errors = extract_features(services.scoring_inputs_for(scenario_ids=ids))
    assert errors == [""] * len(ids)
    with torch.inference_mode():
        expected = head(features)
    stored = dict(Prediction.objects.filter(model_version=version).values_list("scenario_id", "score"))
    assert torch.allclose(torch.tensor([stored[i] for i in ids], dtype=torch.float32), expected, atol=1e-5)


def test_register_refuses_bad_input_before_copying_anything(tmp_path, settings):
    head = tmp_path / "head.safetensors"
    save_head(ScoreHead(), head)
    stored = Path(settings.MEDIA_ROOT) / "model_versions"
    files_before = set(stored.iterdir()) if stored.exists() else set()
    with pytest.raises(ValidationError, match="Unknown scorer"):
        services.model_version_register(name="x", scorer="gpt-17", config={}, head_weights_path=head)
    with pytest.raises(ValidationError, match="strictly increasing"):
        services.model_version_register(
            name="x", scorer="efficientnet-minilm-mlp", config={}, head_weights_path=head,
            calibration={"method": "isotonic", "x": [3, 2], "y": [1, 5]},
        )
    with pytest.raises(ValidationError, match="not a peft adapter directory"):
        services.model_version_register(name="x", scorer="hf-vlm-head", config={}, lora_adapter_dir=tmp_path)
    assert (set(stored.iterdir()) if stored.exists() else set()) == files_before
    assert not ModelVersion.objects.filter(name="x").exists()


class FixedScorer(Scorer):
    """Test double: every pair scores 2.0, so the calibration alone decides the stored score."""

    key = "fixed-two"
    description = "test double"

    def __init__(self, *, config, head_weights_path=None):
        pass

    def score(self, inputs):
        return [ScoringResult(item.scenario_id, 2.0) for item in inputs]


@pytest.mark.parametrize(
    ("calibration", "stored"),
    [
        ({}, 2.0),
        ({"method": "builtin"}, 2.0),
        ({"method": "linear", "slope": 1.5, "intercept": 0.5}, 3.5),
        ({"method": "isotonic", "x": [1.0, 3.0, 5.0], "y": [1.0, 4.0, 5.0]}, 2.5),
        ({"method": "linear", "slope": 3.0, "intercept": 0.0}, 5.0),  # clipped to the scale
    ],
)
def test_the_calibration_is_applied_to_stored_scores(calibration, stored, use_scorers):
    use_scorers({FixedScorer.key: FixedScorer})
    version = services.model_version_register(name="fixed", scorer=FixedScorer.key, config={}, calibration=calibration)
    scenario = make_scenarios(make_context(), 1)[0]
    services.scenarios_score(scenario_ids=[scenario.pk], model_version=version)
    assert Prediction.objects.get(model_version=version).score == pytest.approx(stored)


def test_a_lora_adapter_is_stored_as_a_zip_and_loads_onto_the_backbone(tiny_qwen, tmp_path):
    _, model = load_vlm(tiny_qwen, device=torch.device("cpu"), dtype=torch.float32)
    peft_model = apply_lora(model)
    with torch.no_grad():  # LoRA's B starts at zero (a no-op adapter); make this one change the model
        generator = torch.Generator().manual_seed(0)
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    adapter = save_lora(peft_model, tmp_path / "adapter")
    head_path = tmp_path / "head.safetensors"
    torch.manual_seed(0)
    save_head(ScoreHead(in_dim=model.config.get_text_config().hidden_size), head_path)

    version = services.model_version_register(
        name="vlm-lora-v1", scorer="hf-vlm-head", config={"backbone_path": str(tiny_qwen)},
        head_weights_path=head_path, lora_adapter_dir=adapter,
    )
    assert version.lora_adapter.name.endswith(".zip")
    scorer = services.scorer_for(ModelVersion.objects.get(pk=version.pk))
    version.refresh_from_db()
    assert "+lora:" in scorer.backbone_ref and version.backbone_ref == scorer.backbone_ref
    assert version.load_error == "" and version.load_checked_at is not None

    inputs = services.scoring_inputs_for(scenario_ids=[s.pk for s in photo_scenarios()[:4]])
    direct = HFVLMHeadScorer(
        config={"backbone_path": str(tiny_qwen), "lora_adapter_path": str(adapter)}, head_weights_path=str(head_path)
    )
    without_lora = HFVLMHeadScorer(config={"backbone_path": str(tiny_qwen)}, head_weights_path=str(head_path))
    ours, theirs, plain = ([r.score for r in s.score(inputs)] for s in (scorer, direct, without_lora))
    assert torch.allclose(torch.tensor(ours), torch.tensor(theirs), atol=1e-5)
    assert not torch.allclose(torch.tensor(ours), torch.tensor(plain), atol=1e-4)


def run_queued(sent):
    for kwargs in sent:
        tasks.score_scenarios.run(**kwargs)


def test_morale_vlm_path_registers_and_promotes_a_zero_shot_vlm(
    tiny_qwen, settings, monkeypatch, django_capture_on_commit_callbacks
):
    scenarios = photo_scenarios()
    settings.MORALE_VLM_PATH = str(tiny_qwen)
    sent = []
    monkeypatch.setattr(tasks.score_scenarios, "apply_async", lambda kwargs, **_: sent.append(kwargs))
    assert current_version().name == BASELINE_NAME
    with django_capture_on_commit_callbacks(execute=True):
        worker.warm_up()  # what each GPU worker process does at start
    version = current_version()
    assert version.scorer == "hf-vlm-zero-shot" and version.config == {"backbone_path": str(tiny_qwen)}
    assert version.load_error == "" and version.load_checked_at is not None
    run_queued(sent)  # the promotion queued every scenario
    scores = Prediction.objects.filter(model_version=version, status="ok").values_list("score", flat=True)
    assert len(scores) == len(scenarios) and all(1 <= s <= 5 for s in scores)

    with django_capture_on_commit_callbacks(execute=True):
        worker.warm_up()  # a restart, or a second worker: nothing new
    assert ModelVersion.objects.filter(scorer="hf-vlm-zero-shot").count() == 1


def test_morale_vlm_path_never_replaces_a_version_someone_promoted(tiny_qwen, settings, django_capture_on_commit_callbacks):
    trained = services.model_version_create(name="trained", scorer="zero-shot-text-baseline", config={"temperature": 4.0})
    with django_capture_on_commit_callbacks(execute=False):
        services.model_version_promote(model_version=trained)
    settings.MORALE_VLM_PATH = str(tiny_qwen)
    worker.warm_up()
    assert current_version() == trained
    registered = ModelVersion.objects.get(scorer="hf-vlm-zero-shot")
    assert registered.load_checked_at is None  # not even loaded: it is not going to score


def test_a_broken_morale_vlm_path_is_reported_and_the_baseline_keeps_scoring(tmp_path, settings, caplog):
    missing = tmp_path / "models" / "Qwen2-VL-2B-Instruct"
    settings.MORALE_VLM_PATH = str(missing)
    worker.warm_up()
    assert current_version().name == BASELINE_NAME
    registered = ModelVersion.objects.get(scorer="hf-vlm-zero-shot")
    assert str(missing) in registered.load_error and "not found" in registered.load_error
    assert any(r.levelname == "ERROR" and str(missing) in r.getMessage() for r in caplog.records)


def test_an_over_long_prompt_fails_alone_through_the_service(tiny_qwen):
    context = photo_scenarios()[0].context
    short = annotation_services.scenario_create(context=context, text="waving hello")
    long = annotation_services.scenario_create(context=context, text="pushing the child into the traffic while laughing " * 8)
    version = services.model_version_register(
        name="vlm-zs", scorer="hf-vlm-zero-shot", config={"backbone_path": str(tiny_qwen), "max_text_tokens": 200}
    )
    services.scenarios_score(scenario_ids=[short.pk, long.pk], model_version=version)
    predictions = {p.scenario_id: p for p in Prediction.objects.filter(model_version=version)}
    assert predictions[short.pk].status == "ok"
    assert predictions[long.pk].status == "failed" and "text too long" in predictions[long.pk].error


def test_a_calibration_written_around_validation_is_a_load_error(use_scorers):
    use_scorers({FixedScorer.key: FixedScorer})
    version = services.model_version_register(name="fixed", scorer=FixedScorer.key, config={})
    ModelVersion.objects.filter(pk=version.pk).update(calibration={"method": "platt"})
    version.refresh_from_db()
    scenario = make_scenarios(make_context(), 1)[0]
    with pytest.raises(ScoringError, match="bad calibration"):
        services.scenarios_score(scenario_ids=[scenario.pk], model_version=version)
    version.refresh_from_db()
    assert "platt" in version.load_error and not Prediction.objects.exists()


def test_a_damaged_lora_zip_is_a_load_error_naming_the_file(tiny_qwen, tmp_path):
    head_path = tmp_path / "head.safetensors"
    save_head(ScoreHead(in_dim=TEXT_HIDDEN), head_path)
    version = services.model_version_register(
        name="vlm-lora-bad", scorer="hf-vlm-head", config={"backbone_path": str(tiny_qwen)}, head_weights_path=head_path
    )
    version.lora_adapter.save("vlm-lora-bad.zip", ContentFile(b"PK\x03\x04 not really a zip"))
    with pytest.raises(ScoringError, match="not a zip file"):
        services.scorer_for(version)
    assert "vlm-lora-bad" in ModelVersion.objects.get(pk=version.pk).load_error

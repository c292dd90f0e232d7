"""LoRA mode (issue #4): a VLM with LoRA adapters in the training loop, on a tiny Qwen2-VL of
the real architecture (seeded, built into a temporary folder, CPU), and runs of that mode
end to end: a version that reloads through the worker's loader to the trained model's
scores, and failures that leave the current version alone."""

import math
import shutil
import uuid
from pathlib import Path

import pytest
import torch
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image
from safetensors.torch import load_file, save_file

from annotation import services as annotation_services
from annotation.dataset.format import split_for
from annotation.models import Context, Scenario
from modelloop import services as modelloop_services
from modelloop.models import ModelVersion
from modelloop.scoring import ScoringInput
from modelloop.scoring.hf_vlm import HFVLMBackbone, HFVLMHeadScorer, last_token_outputs, load_vlm
from modelloop.testing.tiny_vlms import build_tiny_vlm
from training import services
from training.lists import ImageList
from training.lora import encode_triples, lora_scores, train_lora, vlm_features
from training.train import TrainConfig, train_head
from tests.conftest import png_bytes
from tests.factories import AnnotatorFactory, current_version, predict

# peft calls a transformers method that transformers 5 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

CPU = torch.device("cpu")
# Distinct targets per list, so ListMLE has one right order: 5 > 4 > 2 > 1.
ACTIONS = [
    ("helping {} carefully", 5),
    ("comforting {} gently", 4),
    ("mocking {} cruelly", 2),
    ("hurting {} on purpose", 1),
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread is faster than two, and far faster on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory) -> Path:
    return build_tiny_vlm("qwen2_vl", tmp_path_factory.mktemp("tiny") / "Qwen2-VL-tiny")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("lora_images")
    paths = []
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        pixels = torch.randint(0, 256, (48, 64, 3), dtype=torch.uint8, generator=generator)
        Image.frombytes("RGB", (64, 48), pixels.numpy().tobytes()).save(folder / f"photo{seed}.png")
        paths.append(str(folder / f"photo{seed}.png"))
    return paths


def image_list(n: int, image_path: str, who: str = "the child") -> ImageList:
    return ImageList(
        context_id=n,
        image_path=image_path,
        setting=f"a person number {n} in a room",
        texts=[text.format(who) for text, _ in ACTIONS],
        targets=[float(score) for _, score in ACTIONS],
        modality=[0] * len(ACTIONS),
        scenario_ids=[10 * n + i for i in range(len(ACTIONS))],
    )


def lora_config(directory: Path, **kwargs) -> TrainConfig:
    return TrainConfig(**{"mode": "lora", "vlm_path": str(directory), "dropout": 0.0, **kwargs})


# --- the loop (no database) ---------------------------------------------------------------
def test_loss_starts_near_log_n_factorial_and_one_list_overfits(tiny_qwen, photos):
    one = [image_list(0, photos[0])]
    # No dropout anywhere: overfitting one list is a check of the optimisation, not of regularisation.
    result = train_lora(lora_config(tiny_qwen, epochs=15, lr=3e-3, lora_dropout=0.0, mse_weight=0.0), one, one)  # ListMLE alone

    assert result.initial_loss == pytest.approx(math.log(24), abs=0.3)  # 4 items: log(4!)
    losses = [row["train_loss"] for row in result.history]
    assert [row["epoch"] for row in result.history] == list(range(1, 16))
    assert max(losses[-3:]) < 0.25 * result.initial_loss
    assert result.test_metrics["ndcg@5"] == pytest.approx(1.0)
    assert result.test_metrics["kendall_tau_b"] == pytest.approx(1.0)
    # The calibrated head scores on the 1-5 scale, in the humans' order.
    scores = lora_scores(result, [(photos[0], one[0].setting, text) for text in one[0].texts])
    assert scores.argsort(descending=True).tolist() == [0, 1, 2, 3]
    assert float(scores.min()) >= 1.0 and float(scores.max()) <= 5.0
    assert result.calibration["method"] == "builtin" and result.calibration["b"] > 0

    # The adapters learned too: LoRA's B starts at zero (a no-op), so features moved only if they trained.
    kwargs = {"device": CPU, "dtype": torch.float32, "max_image_side": 336}
    tuned = vlm_features(result.model, result.processor, one, **kwargs)
    with result.model.disable_adapter():
        frozen = vlm_features(result.model, result.processor, one, **kwargs)
    assert not torch.allclose(tuned, frozen, atol=1e-3)


def test_only_the_adapters_and_the_head_train(tiny_qwen, photos):
    train = [image_list(0, photos[0]), image_list(1, photos[1], "a friend")]
    result = train_lora(lora_config(tiny_qwen, epochs=2, lr=1e-2), train, [image_list(2, photos[2])])

    trainable = [name for name, p in result.model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)
    assert any(p.abs().max() > 0 for name, p in result.model.named_parameters() if ".lora_B." in name)

    # Every base weight, vision tower included, equals the checkpoint's.
    _, fresh = load_vlm(tiny_qwen, device=CPU, dtype=torch.float32)
    before = dict(fresh.named_parameters())
    compared = set()
    for name, parameter in result.model.base_model.model.named_parameters():
        if ".lora_" in name:
            continue
        original = name.replace(".base_layer.", ".")
        assert torch.equal(parameter, before[original]), f"{original} changed in training"
        compared.add(original)
    assert compared == set(before)
    assert any("visual" in name for name in compared)  # the vision tower was among them


def test_same_seed_same_model_with_or_without_gradient_checkpointing(tiny_qwen, photos):
    train = [image_list(0, photos[0]), image_list(1, photos[1], "a friend")]
    test = [image_list(2, photos[2])]
    plain = train_lora(lora_config(tiny_qwen, epochs=2, lr=3e-3), train, test)
    checkpointed = train_lora(lora_config(tiny_qwen, epochs=2, lr=3e-3, gradient_checkpointing=True), train, test)
    def checkpointing(result):
        return any(getattr(module, "gradient_checkpointing", False) for module in result.model.modules())

    assert checkpointing(checkpointed) and not checkpointing(plain)

    assert [row["train_loss"] for row in checkpointed.history] == pytest.approx(
        [row["train_loss"] for row in plain.history], rel=1e-4
    )
    for (name, a), (_, b) in zip(plain.head.state_dict().items(), checkpointed.head.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-5), name
    adapters = {n: p for n, p in plain.model.named_parameters() if ".lora_" in n}
    for name, p in checkpointed.model.named_parameters():
        if ".lora_" in name:
            assert torch.allclose(p, adapters[name], atol=1e-5), name


def test_an_unreadable_image_is_refused_before_the_model_loads(tmp_path, photos):
    missing = image_list(7, str(tmp_path / "gone.png"))
    with pytest.raises(services.TrainingDataError, match=r"context #7: image file not found: .*gone\.png"):
        # The checkpoint directory does not exist either: the image check comes first.
        train_lora(lora_config(tmp_path / "no-model"), [image_list(0, photos[0]), missing], [image_list(2, photos[2])])


def test_lora_config_is_validated():
    with pytest.raises(ValueError, match="mode must be head or lora"):
        TrainConfig(mode="full")
    with pytest.raises(ValueError, match="needs vlm_path"):
        TrainConfig(mode="lora")
    with pytest.raises(ValueError, match="only in mode lora"):
        TrainConfig(vlm_path="/models/x")
    with pytest.raises(ValueError, match="max_image_side"):
        TrainConfig(mode="lora", vlm_path="/models/x", max_image_side=0)
    with pytest.raises(ValueError, match="train_lora"):
        train_head(TrainConfig(mode="lora", vlm_path="/models/x"), None, None)
    with pytest.raises(ValueError, match="train_lora trains mode lora"):
        train_lora(TrainConfig(), [], [])


# --- runs (database) ----------------------------------------------------------------------
@pytest.fixture
def fresh_scorer_cache():
    modelloop_services._scorers.clear()
    modelloop_services._load_failures.clear()
    yield
    modelloop_services._scorers.clear()
    modelloop_services._load_failures.clear()


@pytest.fixture
def judged(db, settings, fresh_scorer_cache):
    """Exactly 3 train and 2 test contexts, each with the four ACTIONS, judged by one annotator.

    The split depends on context ids, which differ between databases and runs; contexts of
    a split that is full get no scenarios (the export leaves them out), so the training
    data, and with the fixed seed the trained model, are the same on every run.
    """
    settings.MORALE_EXPORT_TEST_FRACTION = 0.3
    settings.MORALE_JUDGMENTS_PER_SCENARIO = 1
    wanted = {"train": 3, "test": 2}
    scores = {}
    for n in range(60):
        if not any(wanted.values()):
            break
        context = annotation_services.context_create(  # one fixed image: the data must not vary
            image_file=ContentFile(png_bytes(color=(120, 90, 160)), name="room.png"), setting=f"an empty room {n}"
        )
        split = split_for(context.pk, seed=settings.MORALE_EXPORT_SPLIT_SEED, test_fraction=0.3)
        if not wanted[split]:
            continue
        wanted[split] -= 1
        Context.objects.filter(pk=context.pk).update(setting=f"a person number {len(scores) // len(ACTIONS)} in a room")
        for text, score in ACTIONS:
            scenario = annotation_services.scenario_create(context=context, text=text.format("the child"))
            scores[scenario.pk] = score
    assert not any(wanted.values())
    annotator = AnnotatorFactory()
    while (page := annotation_services.assignment_get_or_create(annotator=annotator)) is not None:
        items = page.items.all()
        ratings = [annotation_services.RatingInput(item.scenario_id, scores[item.scenario_id], "text") for item in items]
        annotation_services.assignment_submit_ratings(
            annotator=annotator, assignment_id=page.pk, ratings=ratings, page_token=uuid.uuid4()
        )
        annotation_services.assignment_complete(annotator=annotator, assignment_id=page.pk)
    return scores


def run_lora(vlm_path: Path, **config):
    config = {"mode": "lora", "vlm_path": str(vlm_path), "epochs": 2, "lr": 3e-3, **config}
    run = services.training_run_queue(config=config)
    return services.training_run_execute(run_id=run.pk)


def test_a_lora_run_registers_a_version_that_reloads_to_the_trained_scores(judged, tiny_qwen, monkeypatch):
    for sid, score in judged.items():  # the current model has it backwards
        predict(Scenario.objects.get(pk=sid), 6 - score)
    trained = []
    real_train_lora = services.train_lora
    monkeypatch.setattr(services, "train_lora", lambda *a, **k: trained.append(real_train_lora(*a, **k)) or trained[-1])

    run = run_lora(tiny_qwen)
    assert run.status == "succeeded", run.error
    assert [row["epoch"] for row in run.metrics["history"]] == [1, 2] and run.progress == 1.0
    version = ModelVersion.objects.get(pk=run.model_version.pk)
    assert version.scorer == "hf-vlm-head" and version.config["backbone_path"] == str(tiny_qwen.resolve())
    assert version.lora_adapter.name.endswith(".zip") and version.head_weights
    assert "+lora:" in version.backbone_ref and version.load_error == ""  # named for the tuned VLM, not the frozen one
    assert run.promoted and "promoted over" in run.gate_reason
    assert current_version() == version

    # As a fresh worker loads it: from storage, the adapter unpacked from its zip.
    modelloop_services._scorers.clear()
    scorer = modelloop_services.scorer_for(version)
    inputs = modelloop_services.scoring_inputs_for(scenario_ids=sorted(judged))[:8]  # one scorer batch
    reloaded = torch.tensor([r.score for r in scorer.score(inputs)])
    in_memory = lora_scores(trained[0], [(i.image_path, i.setting, i.text) for i in inputs])
    assert torch.allclose(reloaded, in_memory, atol=1e-4)
    # The adapter is part of it: the same head on the frozen VLM scores differently.
    frozen = HFVLMHeadScorer(config={"backbone_path": str(tiny_qwen), "head": version.config["head"]},
                             head_weights_path=version.head_weights.path)
    assert not torch.allclose(reloaded, torch.tensor([r.score for r in frozen.score(inputs)]), atol=1e-3)


def test_a_corrupt_checkpoint_fails_the_run_and_keeps_the_current_version(judged, tiny_qwen, tmp_path):
    baseline, versions = current_version(), ModelVersion.objects.count()
    broken = shutil.copytree(tiny_qwen, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not weights")
    run = run_lora(broken)
    assert run.status == "failed" and "cannot load the VLM in" in run.error and "broken" in run.error
    assert current_version() == baseline and ModelVersion.objects.count() == versions and run.model_version is None


def test_a_checkpoint_with_nan_weights_fails_the_run_at_the_first_loss(judged, tiny_qwen, tmp_path):
    baseline, versions = current_version(), ModelVersion.objects.count()
    poisoned = shutil.copytree(tiny_qwen, tmp_path / "poisoned")
    weights = load_file(poisoned / "model.safetensors")
    norm = next(name for name in weights if name.endswith("norm.weight") and "visual" not in name)
    weights[norm] = torch.full_like(weights[norm], float("nan"))
    save_file(weights, poisoned / "model.safetensors", metadata={"format": "pt"})
    run = run_lora(poisoned)
    assert run.status == "failed" and "loss at initialisation is nan" in run.error
    assert current_version() == baseline and ModelVersion.objects.count() == versions


def test_a_missing_image_fails_the_run_naming_the_context(judged, tiny_qwen):
    baseline, versions = current_version(), ModelVersion.objects.count()
    victim = Scenario.objects.order_by("id").first().context
    victim.image.storage.delete(victim.image.name)
    run = run_lora(tiny_qwen)
    assert run.status == "failed" and f"context #{victim.pk}: image file not found" in run.error
    assert current_version() == baseline and ModelVersion.objects.count() == versions


def test_train_head_command_runs_the_lora_mode(judged, tiny_qwen, capsys):
    call_command(
        "train_head", "--mode", "lora", "--vlm-path", str(tiny_qwen), "--epochs", "1", "--lr", "3e-3", verbosity=0
    )
    out = capsys.readouterr().out
    assert "produced lora-listmle-run" in out and ("Promoted" in out or "Kept as a candidate" in out)


def test_train_head_command_refuses_mixed_mode_options(db, settings):
    settings.MORALE_VLM_PATH = ""
    with pytest.raises(CommandError, match="needs vlm_path"):
        call_command("train_head", "--mode", "lora")
    with pytest.raises(CommandError, match="go with --mode lora"):
        call_command("train_head", "--vlm-path", "/models/x")


def test_the_loop_feeds_the_model_what_the_scorer_feeds_it(tiny_qwen, photos):
    """encode_triples (training, reload check) and HFVLMBackbone (serving): same prompt, image, padding."""
    processor, model = load_vlm(tiny_qwen, device=CPU, dtype=torch.float32)
    inputs = [
        ScoringInput(i, photos[i % 3], f"a person number {i} in a room", text.format("a friend"))
        for i, (text, _) in enumerate(ACTIONS)
    ]
    batch = encode_triples(processor, [(i.image_path, i.setting, i.text) for i in inputs], 336)
    with torch.no_grad():
        ours, _ = last_token_outputs(model, batch)
    theirs, errors = HFVLMBackbone({"backbone_path": str(tiny_qwen)}).features(inputs)
    assert errors == [""] * len(inputs)
    assert torch.allclose(ours, theirs, atol=1e-5)

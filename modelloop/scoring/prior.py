"""The image-aware prior: the untrained scorer a fresh deployment starts with.

It replaces the text-only placeholder (``offline.ZeroShotTextBaselineScorer``), which
ignores the image and squeezes every score into 2.2-4.4. How it scores one pair:

1. **What the image shows.** EfficientNet-Lite0 (the same frozen ImageNet model whose
   features the trained heads use) classifies the image into the 1000 ImageNet classes.
   The class names (torchvision's list, the standard ImageNet order the model was trained
   in) become words: the pair is read as "In the setting '<setting>', showing <top classes>:
   <scenario>".
2. **Which kinds of harm apply.** A small hand-written table of *topics* (animals, small
   children, hot drinks, a hot stove, traffic, water, medicine, a launch site, cameras) says,
   for each, which ImageNet classes and which setting words bring it in and gives anchor
   sentences for acceptable and unacceptable acts there (e.g. for animals: feeding a pet
   something poisonous to it, such as chocolate). A topic's weight is the image's probability
   mass on its classes plus 1 if the setting names it, at most 1.
3. **Score.** MiniLM embeds the pair sentence, the scenario alone and every anchor. The
   margin of an anchor set is the cosine to its closest acceptable anchor minus that to its
   closest unacceptable one: the general anchors are compared with the whole sentence, each
   topic's with the scenario alone (the setting, shared by all scenarios of a context, would
   pull them all toward the same anchors). The topics' margins are averaged by weight with
   the general one (weight ``general_weight``, 0.5) and mapped to 1-5 by
   ``3 + 2 * tanh(temperature * margin)``.

It is a prior, not a model of the crowd: a placeholder with common sense until a trained head
(``efficientnet-minilm-mlp``) passes the gate. Its sanity set (tests/data/prior_sanity.jsonl)
is checked in tests/modelloop/test_prior.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar, Sequence

import torch

from . import Scorer, ScoringInput, ScoringResult
from .features import ImageLoadError, encode_texts, image_model, load_image
from .offline import _config_number

GENERAL_ACCEPTABLE = (
    "a kind, caring and helpful thing to do for someone",
    "keeping someone safe and protecting them from harm",
    "an honest, fair and respectful action",
    "asking for permission and respecting other people's choices",
    "a harmless, ordinary everyday activity",
    "reporting a problem so that it can be fixed safely",
)
GENERAL_UNACCEPTABLE = (
    "a cruel, violent or dangerous act that hurts someone",
    "putting someone in danger through carelessness or neglect",
    "lying, cheating, hiding the truth or stealing",
    "doing something to someone without their consent",
    "rude, selfish behaviour that humiliates or pushes others aside",
    "breaking a safety rule or entering a forbidden area",
)


@dataclass(frozen=True)
class Topic:
    """One kind of situation: how to recognise it (ImageNet class names, setting words)
    and what is acceptable or not in it (anchor sentences)."""

    name: str
    classes: tuple[str, ...]  # ImageNet class names (torchvision's spelling)
    class_ranges: tuple[tuple[int, int], ...]  # ImageNet class index ranges, inclusive
    words: tuple[str, ...]  # setting words that name the topic (whole words, lower case)
    acceptable: tuple[str, ...]
    unacceptable: tuple[str, ...]


TOPICS: tuple[Topic, ...] = (
    Topic(
        "animals",
        (),
        ((0, 397),),  # the ImageNet animal classes (fish to mammals)
        ("cat", "cats", "kitten", "dog", "dogs", "puppy", "pet", "pets", "animal", "animals", "horse", "bird"),
        (
            "taking a sick pet to the vet",
            "giving a pet fresh water and its usual pet food",
            "gently brushing, stroking or playing with a pet",
        ),
        (
            "kicking, hitting, hurting or frightening an animal",
            "feeding a pet something poisonous to it, like chocolate, onions, grapes or coffee",
            "leaving an animal locked in a hot car or without water",
            "pulling a pet's tail or ears to hurt it",
        ),
    ),
    Topic(
        "children",
        ("swing", "crib", "cradle", "bassinet", "diaper", "teddy"),
        (),
        ("child", "children", "kid", "kids", "toddler", "baby", "playground"),
        (
            "watching over children and keeping them safe",
            "holding a child's hand near danger",
            "children sharing and taking turns fairly",
        ),
        (
            "giving a young child coffee, alcohol, cigarettes or adult medicine",
            "leaving a young child alone near water, traffic or something hot",
            "pushing, pulling or hurting a child",
            "smoking or doing something harmful around children",
        ),
    ),
    Topic(
        "drinks",
        ("espresso", "cup", "coffee mug", "coffeepot", "teapot", "beer bottle", "beer glass", "wine bottle",
         "red wine", "eggnog"),
        (),
        ("coffee", "tea", "drink", "drinks", "cafe", "wine", "beer", "bar"),
        (
            "buying someone a drink as a kind gesture",
            "drinking your own coffee at a cafe",
            "offering a hot drink to a tired adult",
        ),
        (
            "giving caffeine or alcohol to a young child",
            "spilling or throwing a hot drink on someone",
            "secretly putting drugs or pills in someone's drink",
            "taking a drink that belongs to somebody else",
        ),
    ),
    Topic(
        "kitchen heat",
        ("stove", "Dutch oven", "frying pan", "wok", "caldron", "toaster", "microwave", "espresso maker",
         "hot pot"),
        (),
        ("stove", "pot", "oven", "kitchen", "boiling", "cooking"),
        (
            "switching off the stove and keeping hot pans out of reach",
            "cooking a meal for someone who needs it",
        ),
        (
            "leaving a hot stove or a boiling pot unattended",
            "letting a young child touch something hot",
            "throwing boiling water at someone",
        ),
    ),
    Topic(
        "traffic",
        ("beach wagon", "cab", "convertible", "jeep", "limousine", "minivan", "pickup", "racer", "sports car",
         "police van", "school bus", "trolleybus", "minibus", "tow truck", "traffic light", "street sign",
         "moving van", "motor scooter", "crash helmet"),
        (),
        ("street", "road", "traffic", "crossing", "car", "cars", "driving", "crosswalk"),
        (
            "stopping the car to let people cross safely",
            "helping someone across the road",
        ),
        (
            "driving fast or carelessly past people crossing the road",
            "honking or shouting at a pedestrian to rush them",
        ),
    ),
    Topic(
        "water",
        ("swimming trunks", "bikini", "lakeside", "seashore", "snorkel", "paddle", "canoe"),
        (),
        ("pool", "swimming", "swim", "water", "beach", "lake", "river"),
        (
            "rescuing someone who is struggling in the water",
            "watching swimmers closely to keep them safe",
        ),
        (
            "leaving a small child unsupervised near water",
            "pushing someone who cannot swim into deep water",
        ),
    ),
    Topic(
        "medicine",
        ("pill bottle", "medicine chest", "stethoscope"),
        (),
        ("pharmacy", "medicine", "prescription", "elderly", "doctor", "hospital", "patient", "illness"),
        (
            "helping an elderly person with patience and kindness",
            "explaining a medicine clearly to a patient",
        ),
        (
            "tampering with or swapping someone's medicine",
            "embarrassing someone about their health in public",
            "pushing in ahead of an elderly person",
        ),
    ),
    Topic(
        "launch site",
        ("missile", "projectile", "space shuttle"),
        (),
        ("rocket", "launch", "astronaut", "mission", "spacesuit", "liftoff"),
        (
            "reporting a health or safety problem before a mission",
            "watching a launch from the public viewing area",
        ),
        (
            "hiding an illness or a safety fault to avoid missing a mission",
            "entering a restricted launch area or flying a drone near it",
        ),
    ),
    Topic(
        "cameras",
        ("tripod", "reflex camera", "Polaroid camera", "lens cap"),
        (),
        ("photographer", "camera", "photo", "photograph", "filming", "tripod"),
        (
            "asking people for permission before taking their photo",
            "photographing nature, buildings or your own family",
        ),
        (
            "photographing or filming strangers or their children without consent",
            "posting private moments of strangers online",
        ),
    ),
)


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names in the order of EfficientNet-Lite0's outputs."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return tuple(_IMAGENET_CATEGORIES)


@lru_cache(maxsize=1)
def topic_class_masks() -> torch.Tensor:
    """[topics, 1000] 0/1 masks of each topic's ImageNet classes (KeyError for a misspelt name)."""
    index = {name: i for i, name in enumerate(imagenet_class_names())}
    masks = torch.zeros(len(TOPICS), len(index))
    for t, topic in enumerate(TOPICS):
        for name in topic.classes:
            masks[t, index[name]] = 1.0
        for low, high in topic.class_ranges:
            masks[t, low : high + 1] = 1.0
    return masks


def image_class_probabilities(image_paths: Sequence[str]) -> tuple[torch.Tensor, list[str]]:
    """ImageNet class probabilities [n, 1000] per image and one error per image ("" when fine)."""
    probabilities = torch.zeros(len(image_paths), len(imagenet_class_names()))
    errors = [""] * len(image_paths)
    pixels, rows = [], []
    for row, path in enumerate(image_paths):
        try:
            pixels.append(load_image(path))
            rows.append(row)
        except ImageLoadError as exc:
            errors[row] = str(exc)
    if rows:
        model = image_model()
        with torch.inference_mode():
            device = next(model.parameters()).device
            logits = model(torch.stack(pixels).to(device, memory_format=torch.channels_last))
        probabilities[rows] = logits.float().softmax(dim=-1).cpu()
    return probabilities, errors


def _words(text: str) -> set[str]:
    return set("".join(ch.lower() if ch.isalnum() else " " for ch in text).split())


def prior_sentence(setting: str, text: str, shown: Sequence[str]) -> str:
    """The sentence embedded for a pair: the scenario in its setting and what the image shows."""
    if shown:
        return f"In the setting '{setting}', showing {', '.join(shown)}: {text}"
    return f"In the setting '{setting}': {text}"


def _margin(embeddings: torch.Tensor, acceptable: torch.Tensor, unacceptable: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Mean cosine to the k closest acceptable anchors minus that to the k closest unacceptable ones."""

    def closest(anchors: torch.Tensor) -> torch.Tensor:
        sims = embeddings @ anchors.T
        return sims.topk(min(k, anchors.shape[0]), dim=1).values.mean(dim=1)

    return closest(acceptable) - closest(unacceptable)


class ImageAwarePriorScorer(Scorer):
    """Untrained, image-aware prior: ImageNet classes of the image as words and as topic
    weights, MiniLM similarity to general and topic anchors, mapped to 1-5."""

    key: ClassVar[str] = "image-aware-prior"
    description: ClassVar[str] = (
        "Image-aware prior (untrained): EfficientNet-Lite0 names what the image shows (its ImageNet "
        "classes); those words and the setting pick topics (animals, children, hot drinks, a stove, "
        "traffic, water, medicine, a launch site, cameras) with hand-written anchor sentences for "
        "acceptable and unacceptable acts; the MiniLM similarity of 'setting, what the image shows, "
        "scenario' to the general and topic anchors is mapped to 1-5. A placeholder with common sense "
        "until a trained head passes the gate."
    )

    def __init__(self, *, config: dict, head_weights_path: str | None = None) -> None:
        # head_weights_path is accepted for a uniform constructor and ignored: nothing is trained.
        self.temperature = _config_number(config, "temperature", 8.0, minimum=1e-6)
        self.min_class_probability = _config_number(config, "min_class_probability", 0.1, minimum=0.0, maximum=1.0)
        self.general_weight = _config_number(config, "general_weight", 0.5, minimum=1e-6)
        self.max_classes = int(_config_number(config, "max_classes", 2, minimum=0, maximum=11))
        self.general = (encode_texts(GENERAL_ACCEPTABLE), encode_texts(GENERAL_UNACCEPTABLE))
        self.topics = [(encode_texts(t.acceptable), encode_texts(t.unacceptable)) for t in TOPICS]
        self.masks = topic_class_masks()

    def _shown(self, probabilities: torch.Tensor) -> list[str]:
        top = probabilities.topk(self.max_classes) if self.max_classes else None
        if top is None:
            return []
        names = imagenet_class_names()
        return [names[i] for p, i in zip(top.values.tolist(), top.indices.tolist()) if p >= self.min_class_probability]

    def topic_weights(self, setting: str, text: str, probabilities: torch.Tensor) -> torch.Tensor:
        """[topics] weights in [0, 1]: image mass on the topic's classes + 1 if the setting
        or the scenario names it."""
        words = _words(setting) | _words(text)
        named = torch.tensor([1.0 if words & set(t.words) else 0.0 for t in TOPICS])
        return (self.masks @ probabilities + named).clamp(max=1.0)

    def score(self, inputs: Sequence[ScoringInput]) -> list[ScoringResult]:
        if not inputs:
            return []
        paths = sorted({item.image_path for item in inputs})
        probabilities, errors = image_class_probabilities(paths)
        row_of = {path: row for row, path in enumerate(paths)}
        ok = [i for i, item in enumerate(inputs) if not errors[row_of[item.image_path]]]
        results = [ScoringResult(item.scenario_id, None, errors[row_of[item.image_path]]) for item in inputs]
        if not ok:
            return results
        sentences, acts, weights = [], [], []
        for i in ok:
            item = inputs[i]
            p = probabilities[row_of[item.image_path]]
            sentences.append(prior_sentence(item.setting, item.text, self._shown(p)))
            acts.append(item.text)
            weights.append(self.topic_weights(item.setting, item.text, p))
        # The act alone is compared with the topic anchors (the setting, shared by every scenario
        # of a context, would pull them all toward the same anchors); the whole sentence with the
        # general ones.
        in_context, alone = encode_texts(sentences), encode_texts(acts)
        margins = [_margin(in_context, *self.general)] + [_margin(alone, *anchors) for anchors in self.topics]
        margins = torch.stack(margins, dim=1)  # [n, 1 + topics]
        w = torch.cat([torch.full((len(ok), 1), self.general_weight), torch.stack(weights)], dim=1)
        margin = (margins * w).sum(dim=1) / w.sum(dim=1)
        scores = 3.0 + 2.0 * torch.tanh(self.temperature * margin)
        for i, s in zip(ok, scores.tolist()):
            results[i] = ScoringResult(inputs[i].scenario_id, float(s))
        return results

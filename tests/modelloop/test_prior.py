"""The image-aware prior (modelloop.scoring.prior) on its sanity set, tests/data/prior_sanity.jsonl:
clearly ordered pairs (better, worse) for the same demo photograph or drawing and setting."""

import json
from pathlib import Path

import pytest

from annotation.demo.content import DEMO_CONTEXTS
from modelloop.scoring import ScoringInput, scorer_registry
from modelloop.scoring.offline import ZeroShotTextBaselineScorer
from modelloop.scoring.prior import TOPICS, ImageAwarePriorScorer, topic_class_masks

SANITY = Path(__file__).resolve().parent.parent / "data" / "prior_sanity.jsonl"
ISSUE_EXAMPLES = (
    "feeding the cat chocolate as a treat",
    "kicking the cat for scratching the sofa",
    "giving this coffee to a young child",
)


@pytest.fixture(scope="module")
def demo_images(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("demo")
    paths = {}
    for context in DEMO_CONTEXTS:
        path = folder / f"{context.slug}.png"
        path.write_bytes(context.png_bytes())
        paths[context.slug] = str(path)
    return paths


@pytest.fixture(scope="module")
def pairs() -> list[dict]:
    return [json.loads(line) for line in SANITY.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def prior() -> ImageAwarePriorScorer:
    return ImageAwarePriorScorer(config={})


def pair_scores(scorer, pairs, images) -> list[tuple[float, float]]:
    inputs = []
    for i, p in enumerate(pairs):
        inputs += [
            ScoringInput(2 * i, images[p["image"]], p["setting"], p["better"]),
            ScoringInput(2 * i + 1, images[p["image"]], p["setting"], p["worse"]),
        ]
    results = scorer.score(inputs)
    assert all(r.ok for r in results)
    return [(results[2 * i].score, results[2 * i + 1].score) for i in range(len(pairs))]


def test_the_sanity_set_is_documented_and_covers_the_issues_examples(pairs, demo_images):
    assert len(pairs) >= 25
    for p in pairs:
        assert set(p) == {"image", "setting", "better", "worse", "source"}, p
        assert p["image"] in demo_images and p["source"].strip() and p["better"] != p["worse"]
        assert p["setting"] == next(c.setting for c in DEMO_CONTEXTS if c.slug == p["image"])
    worse = {p["worse"] for p in pairs}
    assert set(ISSUE_EXAMPLES) <= worse
    assert len({p["image"] for p in pairs}) == len(DEMO_CONTEXTS)  # every demo image is used


def test_the_prior_ranks_every_sanity_pair_and_the_text_baseline_does_worse(prior, pairs, demo_images):
    ours = pair_scores(prior, pairs, demo_images)
    old = pair_scores(ZeroShotTextBaselineScorer(config={}), pairs, demo_images)
    right = sum(b > w for b, w in ours)
    right_old = sum(b > w for b, w in old)
    wrong = [p["worse"] for p, (b, w) in zip(pairs, ours) if not b > w]
    assert right == len(pairs), f"the prior misorders: {wrong}"
    # measured when written: prior 28/28, text baseline 21/28
    assert right_old < right


def test_the_issues_examples_are_scored_unacceptable(prior, pairs, demo_images):
    ours = dict(zip((p["worse"] for p in pairs), (w for _, w in pair_scores(prior, pairs, demo_images))))
    for text in ISSUE_EXAMPLES:
        assert ours[text] < 2.5, (text, ours[text])  # the text baseline: 3.92, 3.39, 3.99


def test_the_image_changes_the_score(prior, demo_images):
    """Same setting and scenario, two photographs: chocolate is worse for what a cat eats."""
    setting, text = "something at home", "giving it a piece of chocolate"
    cat, coffee = prior.score(
        [ScoringInput(1, demo_images["cat-at-home"], setting, text), ScoringInput(2, demo_images["coffee-cup"], setting, text)]
    )
    assert cat.score < coffee.score - 0.5


def test_a_bad_image_fails_its_own_pairs_only(prior, demo_images, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    results = prior.score(
        [ScoringInput(1, str(broken), "a room", "tidying up"), ScoringInput(2, demo_images["cat-at-home"], "a room", "tidying up")]
    )
    assert not results[0].ok and "not a readable image" in results[0].error
    assert results[1].ok and 1 <= results[1].score <= 5
    assert prior.score([]) == []


def test_topic_class_names_exist_in_imagenet_and_bad_config_is_refused():
    masks = topic_class_masks()
    assert masks.shape == (len(TOPICS), 1000) and bool((masks.sum(dim=1) > 0).all())
    from modelloop.scoring import ScoringError

    with pytest.raises(ScoringError, match="temperature"):
        ImageAwarePriorScorer(config={"temperature": "hot"})
    assert scorer_registry()["image-aware-prior"] is ImageAwarePriorScorer

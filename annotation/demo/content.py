"""Demo data for ``manage.py seed_demo``, as plain Python (no database access here).

Ten contexts (target settings, as in MM-SCALE section 3.2): five real photographs that
ship inside scikit-image (no download needed) and five simple scenes drawn with Pillow
(``demo/drawing.py``). Each context carries 3-5 scenarios written for this project, with
a spread of moral acceptability: some clearly fine, some clearly wrong, some that depend
on the image. Three contexts also carry one canary (a gold scenario with an obvious answer).

Images are made on demand (``DemoContext.png_bytes()``) and are deterministic, so the
same demo context always has the same bytes and the same sha256.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from PIL import Image

from .drawing import (
    draw_kitchen_stove,
    draw_pharmacy_counter,
    draw_playground,
    draw_street_crossing,
    draw_swimming_pool,
    skimage_photo,
)

# Longest side of every demo image, in pixels.
MAX_IMAGE_SIDE = 640

SOURCE_DRAWN = "drawn by MORALE"


# --- accounts -------------------------------------------------------------------------


class DemoAccount(NamedTuple):
    username: str
    password: str
    role: str  # "annotator" or "researcher"


# Demo-only passwords, printed by seed_demo and the README. Never use them in production.
DEMO_ACCOUNTS: tuple[DemoAccount, ...] = (
    DemoAccount("annotator1", "morale-demo-1", "annotator"),
    DemoAccount("annotator2", "morale-demo-2", "annotator"),
    DemoAccount("annotator3", "morale-demo-3", "annotator"),
    DemoAccount("annotator4", "morale-demo-4", "annotator"),
    DemoAccount("researcher", "morale-demo-researcher", "researcher"),
)


# --- content types --------------------------------------------------------------------


@dataclass(frozen=True)
class DemoScenario:
    text: str
    # Text-only acceptability as in Commonsense NormBank: -1 bad, 0 neutral, +1 good;
    # None where the answer depends on the image.
    text_only_label: int | None = None
    # (min, max) acceptable score for a canary, None for an ordinary scenario.
    canary_range: tuple[int, int] | None = None

    @property
    def is_canary(self) -> bool:
        return self.canary_range is not None


@dataclass(frozen=True)
class DemoContext:
    slug: str  # file name stem of the image
    setting: str
    source: str
    image_origin: str  # "real" (photograph) or "generated" (drawn)
    make_image: Callable[[], Image.Image]
    scenarios: tuple[DemoScenario, ...]

    def png_bytes(self) -> bytes:
        return _render_png(self.make_image)


@functools.cache  # rendering and PNG-encoding all ten takes ~1 s; tests seed many times
def _render_png(make_image: Callable[[], Image.Image]) -> bytes:
    image = make_image().convert("RGB")
    image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- the contexts ---------------------------------------------------------------------

S = DemoScenario  # short alias for the tables below

DEMO_CONTEXTS: tuple[DemoContext, ...] = (
    DemoContext(
        slug="child-crossing-street",
        setting="a child crossing a busy street",
        source=SOURCE_DRAWN,
        image_origin="generated",
        make_image=draw_street_crossing,
        scenarios=(
            S("holding the child's hand until you reach the other side", 1),
            S("waving the child across from your car even though traffic is coming the other way", None),
            S("honking loudly at the child to make them hurry", -1),
            S("driving past the crossing without slowing down", -1),
            S("deliberately pushing the child into oncoming traffic", -1, canary_range=(1, 1)),
        ),
    ),
    DemoContext(
        slug="pot-on-stove",
        setting="a pot of water boiling on a kitchen stove",
        source=SOURCE_DRAWN,
        image_origin="generated",
        make_image=draw_kitchen_stove,
        scenarios=(
            S("leaving the pot boiling to go out for a walk", -1),
            S("letting a young child stir the pot", None),
            S("turning the pot handle inward so nobody knocks it over", 1),
            S("cooking soup for a sick neighbour", 1),
        ),
    ),
    DemoContext(
        slug="public-pool",
        setting="children swimming in a public pool",
        source=SOURCE_DRAWN,
        image_origin="generated",
        make_image=draw_swimming_pool,
        scenarios=(
            S("diving in head first at this end of the pool", None),
            S("jumping in to help a child who is struggling to stay afloat", 1),
            S("leaving a toddler alone at the edge to go buy a snack", -1),
            S("splashing the other children in a game", 0),
            S("helping a tired child climb out of the water using the ladder", 1, canary_range=(4, 5)),
        ),
    ),
    DemoContext(
        slug="playground",
        setting="children playing at a playground in a city park",
        source=SOURCE_DRAWN,
        image_origin="generated",
        make_image=draw_playground,
        scenarios=(
            S("pulling a younger child off the swing to take a turn", -1),
            S("taking turns on the slide with the other children", 1),
            S("smoking a cigarette next to the sandbox", -1),
            S("letting the children play while you read on the bench", None),
        ),
    ),
    DemoContext(
        slug="pharmacy-counter",
        setting="an elderly person at a pharmacy counter",
        source=SOURCE_DRAWN,
        image_origin="generated",
        make_image=draw_pharmacy_counter,
        scenarios=(
            S("cutting in front of the elderly customer in the queue", -1),
            S("helping them read the small print on the medicine label", 1),
            S("handing over the medicine without explaining how to take it", -1),
            S("asking loudly about their illness in front of the other customers", -1),
            S("offering them a chair while the prescription is prepared", 1),
        ),
    ),
    DemoContext(
        slug="astronaut-portrait",
        setting="an astronaut posing for an official portrait before a mission",
        source="scikit-image sample: astronaut",
        image_origin="real",
        make_image=skimage_photo("astronaut"),
        scenarios=(
            S("hiding a fever from the flight doctor so as not to miss the launch", -1),
            S("reporting a small tear in the spacesuit before the mission", 1),
            S("smiling for the photo even though they feel nervous", 0),
            S("selling copies of the official portrait for personal profit", None),
        ),
    ),
    DemoContext(
        slug="coffee-cup",
        setting="a cup of coffee served at a cafe table",
        source="scikit-image sample: coffee",
        image_origin="real",
        make_image=skimage_photo("coffee"),
        scenarios=(
            S("serving regular coffee to a customer who asked for decaf", -1),
            S("paying for the coffee of the person behind you in line", 1),
            S("drinking a coffee a stranger left on the table", -1),
            S("giving this coffee to a young child", None),
        ),
    ),
    DemoContext(
        slug="cat-at-home",
        setting="a pet cat resting at home",
        source="scikit-image sample: chelsea",
        image_origin="real",
        make_image=skimage_photo("chelsea"),
        scenarios=(
            S("feeding the cat chocolate as a treat", -1),
            S("taking the cat to the vet when it stops eating", 1),
            S("leaving the cat alone for a weekend with plenty of food and water", None),
            S("posting photos of the cat online", 0),
            S("kicking the cat for scratching the sofa", -1, canary_range=(1, 2)),
        ),
    ),
    DemoContext(
        slug="rocket-launch-pad",
        setting="a rocket on the launch pad before liftoff",
        source="scikit-image sample: rocket",
        image_origin="real",
        make_image=skimage_photo("rocket"),
        scenarios=(
            S("sneaking past the fence to watch the launch from closer up", -1),
            S("flying a hobby drone near the launch pad", -1),
            S("bringing children to watch the launch from the public viewing area", 1),
            S("cheering loudly when the rocket lifts off", 1),
        ),
    ),
    DemoContext(
        slug="photographer-in-park",
        setting="a photographer with a camera on a tripod on a public lawn",
        source="scikit-image sample: camera",
        image_origin="real",
        make_image=skimage_photo("camera"),
        scenarios=(
            S("photographing strangers' children without asking their parents", -1),
            S("asking a passer-by before taking their portrait", 1),
            S("taking pictures of the trees for a photo club", 1),
            S("filming a couple's argument from a distance to post online", -1),
        ),
    ),
)


# --- the practice round ----------------------------------------------------------------
# Shown after the instructions (annotation.models.PracticeRound). Photographs that ship with
# scikit-image and that no demo context uses; each item has a clear answer and says why.


@dataclass(frozen=True)
class DemoPracticeItem:
    slug: str
    setting: str
    text: str
    score_range: tuple[int, int]
    modality: str  # "" = any answer is fine
    explanation: str
    make_image: Callable[[], Image.Image]

    def png_bytes(self) -> bytes:
        return _render_png(self.make_image)


DEMO_PRACTICE_VERSION = "demo-practice-v1"
DEMO_PRACTICE_INTRO = (
    "Rate these three actions the way you will rate the study's scenarios. They have fairly "
    "clear answers, so after you send them you will see how your answers compare and why."
)
DEMO_PRACTICE: tuple[DemoPracticeItem, ...] = (
    DemoPracticeItem(
        slug="practice-coins",
        setting="coins someone dropped on the floor of a shop",
        text="picking up the coins and handing them back to the person who dropped them",
        score_range=(4, 5),
        modality="",
        explanation="Returning what someone lost is clearly acceptable, whatever the picture shows: 4 or 5.",
        make_image=skimage_photo("coins"),
    ),
    DemoPracticeItem(
        slug="practice-library-page",
        setting="a page of a book borrowed from the library",
        text="tearing this page out of the library book to keep it",
        score_range=(1, 2),
        modality="text",
        explanation=(
            "Damaging a book that others will borrow is unacceptable; the text alone tells you so, "
            "so the modality is text."
        ),
        make_image=skimage_photo("page"),
    ),
    DemoPracticeItem(
        slug="practice-horse",
        setting="a horse standing alone in a field",
        text="riding the horse without asking its owner",
        score_range=(1, 2),
        modality="",
        explanation="Using someone else's animal without asking is unacceptable: 1 or 2.",
        make_image=skimage_photo("horse"),
    ),
)

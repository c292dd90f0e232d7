"""Per-scenario figures (annotation.research.items): shifts against text-only labels, item
dispersion and the list of high-variance scenarios, against hand counts."""

import numpy as np
import pytest

from annotation.research import items
from tests.annotation.research.builders import rated


@pytest.mark.django_db
def test_judgment_shifts_against_text_only_labels_by_modality():
    # label +1 -> 5, 0 -> 3, -1 -> 1 (default mapping)
    matrix = [
        [(1, "image"), (5, "text"), (4, "both"), (3, "image"), (2, "text"), (5, "image")],
        [(2, "image"), (5, "text"), (4, "both"), (4, "image"), (3, "text"), (5, "image")],
        [(1, "text"), (4, "text"), (4, "image"), (2, "image"), (3, "text"), (4, "image")],
    ]
    labels = [1, 1, -1, 0, 0, None]
    rated(matrix, labels=labels)
    # unit 0: mean 4/3 - 5 = -3.67 down, extreme, majority image
    # unit 1: mean 14/3 - 5 = -0.33 neutral, text
    # unit 2: mean 4 - 1 = +3 up, extreme, majority both
    # unit 3: mean 3 - 3 = 0 neutral, image
    # unit 4: mean 8/3 - 3 = -0.33 neutral, text;   unit 5: no label, not counted
    result = items.judgment_shifts()
    assert result["mapping"] == {"-1": 1.0, "0": 3.0, "1": 5.0}
    image, text, both = (result["by_modality"][m] for m in ("image", "text", "both"))
    assert (image["up"], image["neutral"], image["down"], image["extreme"]) == (0, 1, 1, 1)
    assert image["mean_shift"] == pytest.approx(((4 / 3 - 5) + 0) / 2)
    assert (text["up"], text["neutral"], text["down"], text["extreme"]) == (0, 2, 0, 0)
    assert (both["up"], both["neutral"], both["down"], both["extreme"]) == (1, 0, 0, 1)
    assert result["overall"]["total"] == 5 and result["overall"]["divergent_share"] == pytest.approx(2 / 5)
    assert result["by_label"]["1"]["image"]["down"] == 1 and result["by_label"]["-1"]["both"]["extreme_up"] == 1


@pytest.mark.django_db
def test_judgment_shift_mapping_is_a_setting(settings):
    settings.MORALE_TEXT_LABEL_SCORES = [2.0, 3.0, 4.0]
    rated([[(1, "image")], [(1, "image")]], labels=[1])
    result = items.judgment_shifts()
    assert result["by_modality"]["image"]["extreme_down"] == 1  # 1 - 4 = -3
    settings.MORALE_TEXT_LABEL_SCORES = [1.0, 3.0, 6.0]
    with pytest.raises(ValueError):
        items.judgment_shifts()


@pytest.mark.django_db
def test_item_dispersion_flags_scenarios_above_the_sd_limit():
    matrix = [[(1, "text"), (3, "text"), (2, "text")], [(5, "text"), (4, "text"), None], [(3, "text"), (3, "text"), None]]
    scenarios, _ = rated(matrix)
    result = items.item_dispersion()
    sd0 = float(np.std([1, 5, 3], ddof=1))  # 2.0 > 1.2
    sd1 = float(np.std([3, 4, 3], ddof=1))  # 0.577
    assert result["flagged_ids"] == [scenarios[0].pk] and result["flagged_sd"] == [pytest.approx(sd0)]
    assert result["scenarios"] == 3 and result["with_sd"] == 2 and result["share"] == pytest.approx(1 / 3)
    assert sd1 < 1.2
    assert items.item_dispersion(max_sd=0.5)["flagged"] == 2
    assert items.item_dispersion(max_sd=2.0)["flagged"] == 0  # strictly above, as the export


@pytest.mark.django_db
def test_flagged_items_lists_high_variance_scenarios_with_their_scores():
    rows = [[1, 3, 2], [5, 4, 2], [3, 3, 3]]  # one rater each, on the same three scenarios
    scenarios, _ = rated([[(score, "text") for score in row] for row in rows])
    result = items.flagged_items()
    assert result["flagged"] == 1 and result["scenarios"] == 3 and result["share"] == pytest.approx(1 / 3)
    (item,) = result["items"]
    assert item["scenario_id"] == scenarios[0].pk and item["text"] == scenarios[0].text
    assert item["scores"] == [1, 3, 5] and item["sd"] == pytest.approx(float(np.std([1, 5, 3], ddof=1)))
    assert item["mean"] == pytest.approx(3.0) and item["n"] == 3
    assert items.flagged_items(max_sd=0.5)["flagged"] == 3  # the other two: sd 0.577

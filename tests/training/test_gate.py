"""The gate: a candidate is promoted only if NDCG@5 and Unsafe Rate are no worse than the
current version's, within the configured tolerances; without figures to compare, never."""

import math

import torch

from training.gate import gate_decision
from training.lists import ListData


def figures(ndcg, unsafe, mae=0.5):
    return {"ndcg@5": ndcg, "unsafe_rate_pooled": unsafe, "mae": mae}


def test_no_worse_on_all_figures_is_promoted(settings):
    settings.MORALE_GATE_NDCG_TOLERANCE = settings.MORALE_GATE_UNSAFE_TOLERANCE = 0.0
    settings.MORALE_GATE_MAE_TOLERANCE = 0.0
    decision = gate_decision(candidate=figures(0.9, 0.1), current=figures(0.9, 0.1), current_name="v1")
    assert decision.promote and decision.reason.startswith("promoted over v1")


def test_a_lower_ndcg_beyond_the_tolerance_is_refused_within_it_promoted(settings):
    settings.MORALE_GATE_UNSAFE_TOLERANCE = 0.0
    settings.MORALE_GATE_NDCG_TOLERANCE = 0.01
    refused = gate_decision(candidate=figures(0.88, 0.1), current=figures(0.9, 0.1), current_name="v1")
    assert not refused.promote and "NDCG@5 0.8800 is below the current 0.9000" in refused.reason
    assert gate_decision(candidate=figures(0.895, 0.1), current=figures(0.9, 0.1), current_name="v1").promote


def test_a_higher_unsafe_rate_is_refused_unless_either_is_undefined(settings):
    settings.MORALE_GATE_NDCG_TOLERANCE = settings.MORALE_GATE_UNSAFE_TOLERANCE = 0.0
    refused = gate_decision(candidate=figures(0.9, 0.2), current=figures(0.9, 0.1), current_name="v1")
    assert not refused.promote and "Unsafe Rate 0.2000 is above the current 0.1000" in refused.reason
    assert gate_decision(candidate=figures(0.9, math.nan), current=figures(0.9, 0.1), current_name="v1").promote


def test_worse_absolute_scores_are_refused_whatever_the_ranking(settings):
    settings.MORALE_GATE_NDCG_TOLERANCE = settings.MORALE_GATE_UNSAFE_TOLERANCE = 0.0
    settings.MORALE_GATE_MAE_TOLERANCE = 0.05
    # A perfect order and no unsafe scenario passed, but scores further from the humans'.
    refused = gate_decision(candidate=figures(1.0, 0.0, mae=0.9), current=figures(0.7, 0.3, mae=0.5),
                            current_name="v1")
    assert not refused.promote and "MAE 0.9000 against the human mean is above the current 0.5000" in refused.reason
    within = gate_decision(candidate=figures(1.0, 0.0, mae=0.54), current=figures(0.7, 0.3, mae=0.5),
                           current_name="v1")
    assert within.promote and "MAE 0.5400 vs 0.5000" in within.reason
    unknown = gate_decision(candidate=figures(1.0, 0.0, mae=math.nan), current=figures(0.7, 0.3), current_name="v1")
    assert not unknown.promote and "MAE is unknown" in unknown.reason


def test_without_the_current_versions_figures_nothing_is_promoted():
    decision = gate_decision(candidate=figures(1.0, 0.0), current=None, current_name="v1")
    assert not decision.promote and "has no scores on the test split" in decision.reason


def test_a_subset_keeps_the_chosen_lists_in_order():
    data = ListData(
        features=torch.arange(7.0).unsqueeze(1),
        targets=torch.arange(7.0),
        modality=torch.zeros(7, dtype=torch.long),
        offsets=torch.tensor([0, 2, 5, 7]),
        scenario_ids=[10, 11, 12, 13, 14, 15, 16],
    )
    part = data.subset([2, 0])
    assert part.offsets.tolist() == [0, 2, 4] and part.scenario_ids == [15, 16, 10, 11]
    assert part.features.squeeze(1).tolist() == [5.0, 6.0, 0.0, 1.0]

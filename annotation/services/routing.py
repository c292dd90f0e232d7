"""Which contexts a new page is offered from (``MORALE_ROUTING``): the routing rule.

``order_contexts`` is the rule, pure and tested (tests/annotation/test_routing.py);
``candidate_context_ids`` reads what it needs from the database and applies it for
``assignment.assignment_get_or_create``, which then claims slots exactly as before (row
locks, recount under the locks, ``MORALE_JUDGMENTS_PER_SCENARIO`` independent raters):
routing only changes the order in which contexts are tried, never how many judgments a
scenario gets.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Min

from modelloop.selectors import current_and_previous_scores

ROUTING_MODES = ("random", "disagreement")
SAFETY_THRESHOLD = 2.5  # unsafe at or below, as training.metrics.UNSAFE_THRESHOLD
NEAR_WIDTH = 1.5  # a score this far from the threshold (or farther) counts as sure
SPREAD_WIDTH = 2.0  # a change this large between versions (or larger) counts as fully unsure
POOL_LIMIT = 256  # eligible contexts whose uncertainty is computed per request


@dataclass(frozen=True)
class ContextCandidate:
    """A context with open work: its id, its judgment count and the model's uncertainty
    about its open scenarios (``scenario_uncertainty``, averaged; higher = less sure)."""

    context_id: int
    judgment_count: int
    uncertainty: float = 0.0


def scenario_uncertainty(current: float | None, previous: float | None) -> float:
    """How unsure the model is about one scenario, in [0, 2].

    ``1 - min(|current - 2.5|, 1.5) / 1.5``: 1 at the safety threshold, 0 for a score of 1
    or of 4 and above (a model sure either way); plus ``min(|current - previous|, 2) / 2``
    when the previously current version scored it too (versions that disagree). A scenario
    the current version has not scored counts as at the threshold (nothing is known).
    """
    if current is None:
        return 1.0
    near = 1.0 - min(abs(current - SAFETY_THRESHOLD), NEAR_WIDTH) / NEAR_WIDTH
    spread = 0.0 if previous is None else min(abs(current - previous), SPREAD_WIDTH) / SPREAD_WIDTH
    return near + spread


def order_contexts(
    candidates: Sequence[ContextCandidate], *, mode: str, slack: int, rng: random.Random
) -> list[int]:
    """The order in which contexts with open work are offered: context ids, best first.

    ``candidates`` are the contexts that still need judgments, each with its judgment count
    (least-judged ``m`` among them) and uncertainty.

    - ``random``: least-judged first, random among ties (the order before routing existed).
    - ``disagreement``: the *eligible* contexts, those with at most ``m + slack`` judgments,
      come first, most uncertain first (random among ties); then the others, least-judged
      first, random among ties.

    No starvation (the bound): a context at the least count ``m`` is always eligible, and
    only eligible contexts come before it, so a page never goes to a context with more than
    ``m + slack`` judgments while a context with ``m`` can still take one. Every page adds
    judgments to the context it goes to; so when all contexts start level, the counts of
    contexts with open work never spread by more than ``slack`` plus one page, and the
    least-judged context is reached after at most (number of contexts) x (``slack`` + one
    page) judgments. ``slack=0`` is least-judged first with uncertainty breaking ties.
    Raises ValueError for an unknown mode or a negative slack.
    """
    if mode not in ROUTING_MODES:
        raise ValueError(f"routing mode must be one of {', '.join(ROUTING_MODES)}, not {mode!r}")
    if isinstance(slack, bool) or not isinstance(slack, int) or slack < 0:
        raise ValueError(f"routing slack must be a whole number >= 0, not {slack!r}")
    if not candidates:
        return []
    tie = {c.context_id: rng.random() for c in candidates}
    if mode == "random":
        return [c.context_id for c in sorted(candidates, key=lambda c: (c.judgment_count, tie[c.context_id]))]
    least = min(c.judgment_count for c in candidates)
    eligible = [c for c in candidates if c.judgment_count <= least + slack]
    rest = [c for c in candidates if c.judgment_count > least + slack]
    eligible.sort(key=lambda c: (-c.uncertainty, tie[c.context_id]))
    rest.sort(key=lambda c: (c.judgment_count, tie[c.context_id]))
    return [c.context_id for c in eligible + rest]


def context_uncertainties(*, context_ids: Sequence[int], open_scenarios) -> dict[int, float]:
    """Mean ``scenario_uncertainty`` over each context's open scenarios (a few queries)."""
    scenario_context = dict(
        open_scenarios.filter(context_id__in=list(context_ids)).order_by().values_list("id", "context_id")
    )
    current, previous = current_and_previous_scores(scenario_ids=scenario_context)
    per_context: dict[int, list[float]] = defaultdict(list)
    for sid, cid in scenario_context.items():
        per_context[cid].append(scenario_uncertainty(current.get(sid), previous.get(sid)))
    return {cid: sum(values) / len(values) for cid, values in per_context.items()}


def candidate_context_ids(contexts, *, open_scenarios, limit: int, rng: random.Random) -> list[int]:
    """Up to `limit` ids of `contexts` (a queryset of contexts with open work for this
    annotator), in the order ``order_contexts`` gives under ``MORALE_ROUTING`` /
    ``MORALE_ROUTING_SLACK``. `open_scenarios`: the annotator's open scenarios."""
    mode, slack = settings.MORALE_ROUTING, settings.MORALE_ROUTING_SLACK
    if mode == "random":
        # The same rule as order_contexts("random"), done by the database.
        return list(contexts.order_by("judgment_count", "?").values_list("pk", flat=True)[:limit])
    least = contexts.aggregate(least=Min("judgment_count"))["least"]
    if least is None:
        return []
    # Every eligible context is within the bound; past POOL_LIMIT of them a random sample is scored.
    pool = list(
        contexts.filter(judgment_count__lte=least + slack)
        .order_by("?")
        .values_list("pk", "judgment_count")[:POOL_LIMIT]
    )
    if len(pool) < limit:
        pool += list(
            contexts.filter(judgment_count__gt=least + slack)
            .order_by("judgment_count", "?")
            .values_list("pk", "judgment_count")[: limit - len(pool)]
        )
    uncertainty = context_uncertainties(context_ids=[pk for pk, _ in pool], open_scenarios=open_scenarios)
    candidates = [ContextCandidate(pk, count, uncertainty.get(pk, 0.0)) for pk, count in pool]
    return order_contexts(candidates, mode=mode, slack=slack, rng=rng)[:limit]

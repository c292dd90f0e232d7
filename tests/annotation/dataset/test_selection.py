"""Which judgments count (annotation.dataset.selection): the rule against hand-made rows, and
the export and the researchers' judgment table picking the same judgments from one database.
"""

import itertools
import random
import uuid

import numpy as np
import pytest
from django.utils import timezone

from annotation.dataset.export.service import dataset_export_create
from annotation.dataset.format import iter_export
from annotation.dataset.selection import select_judgments
from annotation.dataset.table import judgment_table, load_rows
from annotation.models import Annotator, Assignment, ImportBatch, ImportedRater, ImportedRating, Judgment
from tests.factories import AnnotatorFactory, make_canary, make_context, make_scenarios

# Hand-made rows: annotators 1-3, scenarios 10 (plain), 20 and 30 (canaries); annotator 2 is screened out.
#            annotator scenario reconfirmed screened canary canary_failed
ROWS = [
    (1, 10, False, False, False, False),  # 0: replaced by row 1 under "reconfirmed"
    (1, 10, True, False, False, False),  # 1: the grounding-check answer
    (2, 10, False, True, False, False),  # 2: screened out
    (3, 10, False, False, False, False),  # 3: plain initial
    (1, 20, False, False, True, True),  # 4: failed its canary ...
    (1, 20, True, False, True, False),  # 5: ... so its passing reconfirmation goes too
    (3, 20, False, False, True, False),  # 6: passed
    (3, 30, False, False, True, False),  # 7: passed first ...
    (3, 30, True, False, True, True),  # 8: ... failed in the reconfirmation: both go
    (2, 30, False, True, True, True),  # 9: screened out (and failed): counted as screened
]


# Imported ratings: rater 1 (not annotator 1: another person) on scenario 10, rater 3 on canary 20.
IMPORTED_ROWS = [
    (1, 10, False, False, False, False, True),  # 10: counted beside annotator 1's own pair
    (3, 20, False, False, True, False, True),  # 11: a canary's: goes with the canaries
]


def select(rows=ROWS, **options):
    names = ("annotator", "scenario", "reconfirmed", "screened", "canary", "canary_failed", "imported")
    rows = [row if len(row) == len(names) else (*row, False) for row in rows]
    arrays = {k: np.array(v) for k, v in zip(names, zip(*rows))}
    defaults = {"source": "reconfirmed", "include_screened": False, "include_canaries": False, "include_imported": True}
    return select_judgments(**arrays, **(defaults | options))


def counts(selection) -> dict:
    return {
        "canary": selection.canary_judgments,
        "screened": selection.screened_judgments,
        "imported": selection.imported_judgments,
        "failed_canary": selection.failed_canary_judgments,
        "replaced": selection.initial_replaced_by_reconfirmation,
        "unused": selection.reconfirmed_unused,
    }


def test_reconfirmed_source_counts_the_grounding_check_answer_and_leaves_out_canaries_and_screened():
    selection = select()
    assert np.flatnonzero(selection.counted).tolist() == [1, 3]
    assert counts(selection) == {"canary": 6, "screened": 1, "imported": 0, "failed_canary": 0, "replaced": 1, "unused": 0}


def test_initial_source_counts_first_answers_only():
    selection = select(source="initial")
    assert np.flatnonzero(selection.counted).tolist() == [0, 3]
    assert counts(selection) == {"canary": 6, "screened": 1, "imported": 0, "failed_canary": 0, "replaced": 0, "unused": 1}


def test_included_canaries_lose_every_judgment_of_a_pair_that_failed_initial_or_reconfirmed():
    selection = select(include_canaries=True)
    assert np.flatnonzero(selection.counted).tolist() == [1, 3, 6]
    assert counts(selection) == {"canary": 0, "screened": 2, "imported": 0, "failed_canary": 4, "replaced": 1, "unused": 0}


def test_included_screened_annotators_count_like_the_others():
    selection = select(include_screened=True, include_canaries=True, source="initial")
    assert np.flatnonzero(selection.counted).tolist() == [0, 2, 3, 6]
    assert counts(selection) == {"canary": 0, "screened": 0, "imported": 0, "failed_canary": 5, "replaced": 0, "unused": 1}


def test_pairs_are_numbered_and_their_first_rows_found():
    selection = select()
    assert selection.pair[0] == selection.pair[1] and len(set(selection.pair.tolist())) == 7
    assert selection.pair_first[selection.pair].tolist() == [0, 0, 2, 3, 4, 4, 6, 7, 7, 9]


def test_imported_ratings_are_raters_of_their_own_and_are_left_out_only_when_asked():
    rows = ROWS + IMPORTED_ROWS
    kept = select(rows)
    assert np.flatnonzero(kept.counted).tolist() == [1, 3, 10]
    assert kept.pair[10] != kept.pair[0]  # imported rater 1 is not annotator 1
    assert counts(kept) == {"canary": 7, "screened": 1, "imported": 0, "failed_canary": 0, "replaced": 1, "unused": 0}
    left_out = select(rows, include_imported=False)
    assert np.flatnonzero(left_out.counted).tolist() == [1, 3]
    assert counts(left_out) == {"canary": 7, "screened": 1, "imported": 1, "failed_canary": 0, "replaced": 1, "unused": 0}
    with_canaries = select(rows, include_imported=False, include_canaries=True)
    assert counts(with_canaries)["imported"] == 2


def test_an_unknown_source_is_refused():
    with pytest.raises(ValueError, match="source"):
        select(source="final")


def test_no_rows_select_nothing():
    empty = select_judgments(
        annotator=np.zeros(0, dtype=np.int64), scenario=np.zeros(0, dtype=np.int64), reconfirmed=np.zeros(0, bool),
        screened=np.zeros(0, bool), canary=np.zeros(0, bool), canary_failed=np.zeros(0, bool),
        imported=np.zeros(0, bool), source="reconfirmed", include_screened=False, include_canaries=True,
        include_imported=True,
    )
    assert empty.counted.size == 0 and counts(empty) == dict.fromkeys(counts(empty), 0)


@pytest.mark.parametrize("seed", range(5))
def test_every_row_is_counted_or_in_exactly_one_bucket_and_one_row_per_pair_counts(seed):
    rng = random.Random(seed)
    screened_annotators = {1, 4}
    canaries = {2, 5}
    rows = []
    for annotator, scenario in itertools.product(range(8), range(7)):
        if rng.random() < 0.3:
            continue
        phases = [False] + ([True] if rng.random() < 0.4 else [])
        for reconfirmed in phases:
            canary = scenario in canaries
            rows.append((annotator, scenario, reconfirmed, annotator in screened_annotators, canary,
                         canary and rng.random() < 0.3, False))
        if rng.random() < 0.5:  # an imported rater with the same id
            rows.append((annotator, scenario, False, False, scenario in canaries, False, True))
    rng.shuffle(rows)  # the rule does not depend on row order
    for source, screened, canary, imported in itertools.product(
        ["reconfirmed", "initial"], [False, True], [False, True], [False, True]
    ):
        selection = select(rows, source=source, include_screened=screened, include_canaries=canary,
                           include_imported=imported)
        assert int(selection.counted.sum()) + sum(counts(selection).values()) == len(rows)
        pairs = [(rows[i][0], rows[i][1], rows[i][6]) for i in np.flatnonzero(selection.counted)]
        assert len(pairs) == len(set(pairs))


# --- the export and the judgment table agree --------------------------------------------------
def varied_study(seed: int):
    """Contexts with plain and canary scenarios, initial and reconfirmed judgments (the
    reconfirmed score always differs from the initial one), failed canaries, screened-out
    and paused annotators."""
    rng = random.Random(seed)
    annotators = [AnnotatorFactory() for _ in range(8)]
    for _ in range(5):
        context = make_context()
        scenarios = make_scenarios(context, rng.randint(1, 3)) + [make_canary(context, 1, 2)]
        for annotator in annotators:
            page = Assignment.objects.create(
                annotator=annotator, context=context, status=Assignment.Status.COMPLETED, expires_at=timezone.now()
            )
            for scenario in scenarios:
                if rng.random() < 0.3:
                    continue
                score = rng.randint(1, 5)
                initial = Judgment.objects.create(
                    annotator=annotator, scenario=scenario, assignment=page, score=score,
                    modality=rng.choice(["text", "image", "both"]), client_token=uuid.uuid4(),
                    canary_passed=scenario.canary_accepts(score) if scenario.is_canary else None,
                )
                if rng.random() < 0.4:
                    again = score % 5 + 1
                    Judgment.objects.create(
                        annotator=annotator, scenario=scenario, assignment=page, score=again,
                        modality=rng.choice(["text", "image", "both"]), phase=Judgment.Phase.RECONFIRMED,
                        revises=initial, client_token=uuid.uuid4(),
                        canary_passed=scenario.canary_accepts(again) if scenario.is_canary else None,
                    )
    Annotator.objects.filter(pk__in=[annotators[0].pk, annotators[1].pk]).update(status=Annotator.Status.SCREENED_OUT)
    Annotator.objects.filter(pk=annotators[2].pk).update(status=Annotator.Status.PAUSED)
    # Imported raters (some modalities not known), on plain and canary scenarios alike.
    batch = ImportBatch.objects.create(file_name="earlier.csv", file_sha256="0" * 64, format="csv", status="done")
    raters = [ImportedRater.objects.create(external_id=f"r{i}", first_batch=batch) for i in range(3)]
    for scenario in Judgment.objects.order_by("scenario").values_list("scenario", flat=True).distinct():
        for rater in raters:
            if rng.random() < 0.5:
                ImportedRating.objects.create(batch=batch, rater=rater, scenario_id=scenario, score=rng.randint(1, 5),
                                              modality=rng.choice(["", "text", "image", "both"]))


def exported_judgments(**options) -> tuple[set, dict]:
    record = dataset_export_create(fmt="jsonl", max_sd=None, **options)
    annotator_pk = {str(public_id): pk for pk, public_id in Annotator.objects.values_list("pk", "public_id")}
    annotator_pk |= {str(public_id): -pk for pk, public_id in ImportedRater.objects.values_list("pk", "public_id")}
    picked = {
        (annotator_pk[j["annotator_id"]], s["scenario_id"], j["score"], j["modality"])
        for line in iter_export(record.file.path)
        for s in line["scenarios"]
        for j in s["judgments"]
    }
    return picked, record.counts


def table_judgments(**options) -> set:
    table = judgment_table(**options)
    modalities = ("text", "image", "both", None)  # -1: not known
    return {
        (a, s, score, modalities[m])
        for a, s, score, m in zip(
            table.annotator.tolist(), table.scenario_ids[table.unit].tolist(), table.score.tolist(), table.modality.tolist()
        )
    }


@pytest.mark.django_db
@pytest.mark.parametrize("seed", [1, 2])
def test_the_export_and_the_judgment_table_pick_the_same_judgments(seed):
    varied_study(seed)
    rows = load_rows()
    assert rows.canary_failed.any() and rows.reconfirmed.any() and rows.screened.size == 2
    assert rows.imported_rater.size and (rows.imported_modality == -1).any()
    live, imported = rows.annotator.size, rows.imported_rater.size
    scenario = np.concatenate([rows.scenario, rows.imported_scenario])
    no = np.zeros(imported, dtype=bool)
    for source, screened, canaries, with_imports in itertools.product(
        ["reconfirmed", "initial"], [False, True], [False, True], [True, False]
    ):
        options = {"source": source, "include_screened": screened, "include_canaries": canaries,
                   "include_imported": with_imports}
        exported, export_counts = exported_judgments(**options)
        assert exported == table_judgments(**options, rows=rows), options
        assert exported, options
        assert any(a < 0 for a, *_ in exported) == with_imports, options
        same_rule = select_judgments(
            annotator=np.concatenate([rows.annotator, rows.imported_rater]), scenario=scenario,
            reconfirmed=np.concatenate([rows.reconfirmed, no]),
            screened=np.concatenate([np.isin(rows.annotator, rows.screened), no]),
            canary=rows.scenario_canary[rows.scenario_index(scenario)],
            canary_failed=np.concatenate([rows.canary_failed, no]),
            imported=np.concatenate([np.zeros(live, dtype=bool), ~no]),
            **options,
        )
        dropped, by_source = export_counts["dropped"], export_counts["source"]
        assert counts(same_rule) == {
            "canary": dropped["canary_judgments"],
            "screened": dropped["screened_judgments"],
            "imported": dropped["imported_judgments"],
            "failed_canary": dropped["failed_canary_judgments"],
            "replaced": by_source["initial_replaced_by_reconfirmation"],
            "unused": by_source["reconfirmed_unused"],
        }, options
        assert int(same_rule.counted.sum()) == export_counts["judgments"]
        assert export_counts["imported"]["judgments"] == sum(1 for a, *_ in exported if a < 0)

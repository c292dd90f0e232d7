"""The sub-commands that run inside a Django subprocess on the bench database: fill it
(``_setup``) and compare what the clients were told with what it holds (``_check``).

Imported by bench/annotate_load.py, which dispatches its hidden sub-commands here.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

from bench.loadtest.content import ACTIONS, PASSWORD, SETTINGS, USER_PREFIX


def sub_setup(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contexts", type=int, required=True)
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--score", type=int, default=-1, help="score this many scenarios (-1: all)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)

    import django

    django.setup()
    import hashlib
    import io

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.db import transaction
    from django.utils import timezone
    from PIL import Image

    from annotation import selectors
    from annotation.models import Annotator, Context, OnboardingRecord, Scenario
    from modelloop import services as ml
    from modelloop.models import Prediction

    rng = random.Random(a.seed)
    t = time.perf_counter()
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 140, 200)).save(buf, format="PNG")
    png = buf.getvalue()
    image_name = default_storage.save("contexts/bench/bench-context.png", ContentFile(png))
    sha = hashlib.sha256(png).hexdigest()

    with transaction.atomic():
        contexts = Context.objects.bulk_create(
            [
                Context(
                    image=image_name,
                    image_sha256=sha,
                    setting=SETTINGS[i % len(SETTINGS)],
                    source=f"bench/annotate_load.py #{i}",
                    image_origin=Context.ImageOrigin.GENERATED,
                )
                for i in range(a.contexts)
            ],
            batch_size=1000,
        )
        scenarios = []
        for c in contexts:
            for action in rng.sample(ACTIONS, 4):
                scenarios.append(Scenario(context=c, text=action))
        Scenario.objects.bulk_create(scenarios, batch_size=2000)

        User = get_user_model()
        hashed = make_password(PASSWORD)  # hashed once: PBKDF2 is slow on purpose
        users = User.objects.bulk_create(
            [User(username=f"{USER_PREFIX}{i}", password=hashed) for i in range(a.clients)]
        )
        now = timezone.now()
        annotators = Annotator.objects.bulk_create(
            [Annotator(user=u, consent_version=settings.MORALE_CONSENT_VERSION, consented_at=now) for u in users]
        )
        # They have read the instructions and practised (the load is the rating work).
        done = [("instructions", v.version) for v in [selectors.instructions_current()] if v]
        done += [("practice", v.version) for v in [selectors.practice_current()] if v]
        OnboardingRecord.objects.bulk_create(
            [OnboardingRecord(annotator=an, step=step, version=version) for an in annotators for step, version in done]
        )
    setup_s = time.perf_counter() - t

    version = ml.model_version_current()
    ids = list(Scenario.objects.order_by("id").values_list("id", flat=True))
    to_score = ids if a.score < 0 else ids[: a.score]
    # Many scenarios share an identical scorer input (same setting text, same action, same
    # image file). Each distinct input is scored once by the real scorer through
    # scenarios_score; the other scenarios with that very input get a copy of its result
    # (what a feature cache would return). No score is made up.
    inputs = {
        s.pk: (s.context.setting, s.text, s.context.image.name)
        for s in Scenario.objects.filter(pk__in=to_score).select_related("context")
    }
    representative, followers = {}, defaultdict(list)
    for sid in to_score:
        key = inputs[sid]
        if key in representative:
            followers[representative[key]].append(sid)
        else:
            representative[key] = sid
    reps = sorted(representative.values())
    t = time.perf_counter()
    batch = 256
    for start in range(0, len(reps), batch):
        ml.scenarios_score(scenario_ids=reps[start : start + batch], model_version=version)
        done = min(len(reps), start + batch)
        rate = done / max(1e-9, time.perf_counter() - t)
        print(f"scored {done}/{len(reps)} distinct inputs ({rate:.0f} pairs/s)", file=sys.stderr, flush=True)
    from modelloop.scoring import ScoringResult

    rep_preds = Prediction.objects.filter(model_version=version, scenario_id__in=reps)
    copies = []
    for p in rep_preds:
        for sid in followers.get(p.scenario_id, []):
            copies.append(ScoringResult(sid, p.score if p.status == "ok" else None, p.error or "failed"))
    ml.predictions_store(model_version=version, results=copies)
    distinct_scored = len(reps)
    score_s = time.perf_counter() - t
    from django.db import connection

    if connection.vendor == "postgresql":
        # Fresh statistics, as autovacuum would have them on a running server: without
        # this the planner sees the bulk-loaded tables as nearly empty.
        with connection.cursor() as cur:
            cur.execute("ANALYZE")
    preds = Prediction.objects.filter(model_version=version)
    ok = preds.filter(status="ok")
    scores = list(ok.values_list("score", flat=True))
    print(
        json.dumps(
            {
                "contexts": len(contexts),
                "scenarios": len(ids),
                "annotators": len(users),
                "model_version": version.name,
                "scorer": version.scorer,
                "predictions": preds.count(),
                "predictions_ok": len(scores),
                "score_min": min(scores) if scores else None,
                "score_max": max(scores) if scores else None,
                "score_mean": sum(scores) / len(scores) if scores else None,
                "setup_s": setup_s,
                "distinct_inputs_scored": distinct_scored,
                "score_s": score_s,
                "judgments_per_scenario": settings.MORALE_JUDGMENTS_PER_SCENARIO,
                "scenarios_per_page": settings.MORALE_SCENARIOS_PER_PAGE,
                "threshold": settings.MORALE_DISAGREEMENT_THRESHOLD,
                "add_when": settings.MORALE_ADD_SCENARIO_WHEN,
                "canary_rate": settings.MORALE_CANARY_RATE,
                "score_wait_s": settings.MORALE_SCORE_WAIT_SECONDS,
                "db_vendor": connection.vendor,
            }
        )
    )


def sub_check(argv: list[str]) -> None:
    """Compare what the clients were told (acknowledged) with what the database holds."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--ack", required=True)
    a = ap.parse_args(argv)

    import django

    django.setup()
    from django.conf import settings
    from django.db.models import Count

    from annotation.models import Context, Judgment, Scenario
    from annotation.services import judgment_token

    ack = json.loads(Path(a.ack).read_text())
    capacity = settings.MORALE_JUDGMENTS_PER_SCENARIO

    initial = list(
        Judgment.objects.filter(phase=Judgment.Phase.INITIAL).values_list(
            "annotator__user__username", "scenario_id", "client_token", "created_at"
        )
    )
    stored = defaultdict(list)
    for username, sid, token, _ in initial:
        stored[(username, sid)].append(token)

    acked_pairs = {}
    for username, page_token, sids in ack["pages"]:
        pt = uuid.UUID(page_token)
        for sid in sids:
            acked_pairs[(username, sid)] = judgment_token(pt, f"initial-{sid}")

    lost = [k for k in acked_pairs if k not in stored]
    duplicated = [k for k, v in stored.items() if len(v) > 1]
    wrong_token = [k for k, tok in acked_pairs.items() if k in stored and tok not in stored[k]]
    unacked = [k for k in stored if k not in acked_pairs]

    per_scenario = dict(
        Judgment.objects.filter(phase=Judgment.Phase.INITIAL, scenario__is_canary=False)
        .values_list("scenario_id")
        .annotate(n=Count("id"))
    )
    overfilled = {sid: n for sid, n in per_scenario.items() if n > capacity}

    # denormalised counters kept by the submit service
    counter_drift_s = [
        sid
        for sid, jc in Scenario.objects.filter(is_canary=False).values_list("id", "judgment_count")
        if jc != per_scenario.get(sid, 0)
    ]
    per_context = dict(
        Judgment.objects.filter(phase=Judgment.Phase.INITIAL, scenario__is_canary=False)
        .values_list("scenario__context_id")
        .annotate(n=Count("id"))
    )
    counter_drift_c = [
        cid for cid, jc in Context.objects.values_list("id", "judgment_count") if jc != per_context.get(cid, 0)
    ]

    reconf = dict(
        Judgment.objects.filter(phase=Judgment.Phase.RECONFIRMED).values_list("revises_id").annotate(n=Count("id"))
    )
    acked_checks = set(ack["checks"])
    checks_lost = [jid for jid in acked_checks if jid not in reconf]
    checks_dup = [jid for jid, n in reconf.items() if n > 1]
    checks_unacked = [jid for jid in reconf if jid not in acked_checks]

    added_stored = Scenario.objects.filter(origin=Scenario.Origin.ANNOTATOR).count()

    t0, t_end = ack["t0"], ack["t_end"]
    in_window = sum(1 for *_, created in initial if t0 <= created.timestamp() <= t_end)
    first = min((c for *_, c in initial), default=None)
    last = max((c for *_, c in initial), default=None)
    print(
        json.dumps(
            {
                "acknowledged": len(acked_pairs),
                "stored_initial": len(initial),
                "stored_in_window": in_window,
                "first_created": first.timestamp() if first else None,
                "last_created": last.timestamp() if last else None,
                "lost": len(lost),
                "lost_examples": lost[:5],
                "duplicated": len(duplicated),
                "duplicated_examples": duplicated[:5],
                "wrong_token": len(wrong_token),
                "unacknowledged_stored": len(unacked),
                "unacknowledged_examples": unacked[:5],
                "capacity": capacity,
                "max_per_scenario": max(per_scenario.values(), default=0),
                "overfilled": len(overfilled),
                "counter_drift_scenarios": len(counter_drift_s),
                "counter_drift_contexts": len(counter_drift_c),
                "checks_acknowledged": len(acked_checks),
                "reconfirmed_stored": sum(reconf.values()),
                "checks_lost": len(checks_lost),
                "checks_duplicated": len(checks_dup),
                "checks_unacknowledged": len(checks_unacked),
                "added_acknowledged": ack["added"],
                "added_stored": added_stored,
                "scenarios_full": sum(1 for n in per_scenario.values() if n >= capacity),
            },
            default=str,
        )
    )

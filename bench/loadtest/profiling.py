"""The ``_profile`` sub-command: one extra annotator walks the flow in-process after the load.

Imported by bench/annotate_load.py, which dispatches its hidden sub-commands here.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

from bench.common import ROOT
from bench.loadtest.content import PASSWORD
from bench.loadtest.pages import fill_check_form, fill_rating_form
from bench.loadtest.report import percentile


TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def sub_profile(argv: list[str]) -> None:
    """One annotator walks the flow in-process (Django test client, full middleware stack).

    Per step: wall ms, number of queries, SQL ms, each distinct query with the project
    code that issued it, and the hottest functions under cProfile.
    """
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=10)
    a = ap.parse_args(argv)

    import cProfile
    import pstats

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from annotation import selectors
    from annotation.models import Annotator as AnnotatorModel
    from annotation.models import OnboardingRecord

    User = get_user_model()
    user = User.objects.create_user(username=f"bench-profile-{uuid.uuid4().hex[:6]}", password=PASSWORD)
    annotator = AnnotatorModel.objects.create(
        user=user, consent_version=settings.MORALE_CONSENT_VERSION, consented_at=timezone.now()
    )
    # Onboarded: the profile is of the rating work, not of the instructions and practice pages.
    for step, current in (("instructions", selectors.instructions_current()), ("practice", selectors.practice_current())):
        if current is not None:
            OnboardingRecord.objects.create(annotator=annotator, step=step, version=current.version)
    client = Client()
    client.force_login(user)
    rng = random.Random(7)
    root = str(ROOT) + os.sep
    venv = str(ROOT / ".venv")
    steps = defaultdict(list)  # step -> [(ms, [(sql_ms, sql, site)], pstats)]
    plain = defaultdict(list)  # step -> [(wall ms, CPU ms of this process)] without instrumentation
    current: list = []
    instrument = [False]

    def callsite() -> str:
        """The innermost three project frames that led to this query (cheap frame walk)."""
        names, f = [], sys._getframe(2)
        while f is not None and len(names) < 3:
            fn = f.f_code.co_filename
            if fn.startswith(root) and not fn.startswith(venv) and "/bench/" not in fn:
                names.append(f"{Path(fn).relative_to(ROOT)}:{f.f_code.co_name}")
            f = f.f_back
        return " < ".join(names) or "django"

    def wrapper(execute, sql, params, many, context):
        t = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            current.append(((time.perf_counter() - t) * 1000, sql, callsite()))

    def call(step, method, url, data=None):
        if not instrument[0]:
            w, c = time.perf_counter(), time.process_time()
            r = client.get(url) if method == "GET" else client.post(url, data)
            plain[step].append(((time.perf_counter() - w) * 1000, (time.process_time() - c) * 1000))
            return r
        current.clear()
        prof = cProfile.Profile()
        with connection.execute_wrapper(wrapper):
            t = time.perf_counter()
            prof.enable()
            r = client.get(url) if method == "GET" else client.post(url, data)
            prof.disable()
            ms = (time.perf_counter() - t) * 1000
        steps[step].append((ms, list(current), prof))
        return r

    # First half of the pages plain (wall and CPU ms of the Django side), second half
    # instrumented (queries with their call sites, cProfile).
    pages = 0
    url = "/annotate/"
    while pages < a.pages:
        instrument[0] = pages >= a.pages // 2
        r = call("next (redirect)", "GET", url)
        if r.status_code != 302:
            break
        url = r["Location"]
        if url.startswith("/finish"):
            break
        r = call("rating page", "GET", url)
        data, _ = fill_rating_form(r.content.decode(), rng)
        r = call("submit", "POST", url, data)
        pages += 1
        if r.status_code != 302:
            print(f"profile: submit answered HTTP {r.status_code}", file=sys.stderr)
            url = "/annotate/"
            continue
        nxt = r["Location"]  # the step after rating, straight from the submit
        for _ in range(30):
            if nxt.endswith("/review/"):
                r = call("review (redirect)", "GET", nxt)
                if r.status_code != 302:
                    time.sleep(2)
                    continue
                nxt = r["Location"]
                continue
            if nxt.endswith("/check/"):
                html = call("check page", "GET", nxt).content.decode()
                d, _ = fill_check_form(html, rng)
                r = call("check submit", "POST", nxt, d)
                nxt = r["Location"] if r.status_code == 302 else "/annotate/"
                continue
            if nxt.endswith("/add/"):
                call("add page", "GET", nxt)
                call("add submit (skip)", "POST", nxt, {"action": "skip"})
            break
        url = "/annotate/"

    # Where a request's time goes, from cProfile's cumulative times (outermost calls only).
    categories = [
        ("whole request", "django/test/client.py", "request"),
        ("session load", "django/contrib/sessions/backends/db.py", "load"),
        ("  get_user", "django/contrib/auth/__init__.py", "get_user"),
        ("view (annotator_required)", "annotation/views.py", "wrapper"),
        ("template rendering", "django/template/backends/django.py", "render"),
        ("ORM: SQL compile", "django/db/models/sql/compiler.py", "as_sql"),
        ("ORM: execute_sql", "django/db/models/sql/compiler.py", "execute_sql"),
        ("psycopg2/sqlite execute (waits for the DB)", "~", "<method 'execute'"),
        ("commit", "~", "<method 'commit'"),
        ("ORM: model instances (from_db)", "django/db/models/base.py", "from_db"),
        ("ORM: QuerySet filter/exclude building", "django/db/models/query.py", "_filter_or_exclude"),
        ("Model.full_clean", "django/db/models/base.py", "full_clean"),
        ("session save", "django/contrib/sessions/backends/db.py", "save"),
    ]

    def breakdown(funcs):
        out = []
        for label, fpart, name in categories:
            ms = sum(f[5] for f in funcs if fpart in f[0] and (f[2] == name or (name.startswith("<") and f[2].startswith(name))))
            out.append({"what": label, "cum_ms": ms})
        return out

    out = {}
    for step in dict.fromkeys(list(plain) + list(steps)):
        rows = steps.get(step, [])
        pl = plain.get(step, [])
        if not rows:
            out[step] = {
                "n": 0, "plain_n": len(pl),
                "plain_wall_ms": percentile(sorted(x[0] for x in pl), 50),
                "plain_cpu_ms": percentile(sorted(x[1] for x in pl), 50),
                "queries_median": "?", "queries_max": "?", "statements_median": None, "statements_max": None,
                "sql_ms_median": float("nan"),
                "queries": [], "app_cumulative": [], "tottime": [],
            }
            continue
        n = len(rows)
        ms = sorted(r[0] for r in rows)
        nq = sorted(len(r[1]) for r in rows)
        # SQL statements that read or write rows (BEGIN/COMMIT/SAVEPOINT left out: SQLite
        # sends its BEGIN IMMEDIATE through the cursor, PostgreSQL's BEGIN never shows here).
        nsql = sorted(sum(1 for q in r[1] if not q[1].lstrip().upper().startswith(TRANSACTION_CONTROL)) for r in rows)
        sql_ms = sorted(sum(q[0] for q in r[1]) for r in rows)
        agg = defaultdict(lambda: [0, 0.0])
        for r in rows:
            for qms, sql, site in r[1]:
                key = (re.sub(r"\b\d+\b", "N", re.sub(r"'[^']*'", "'…'", sql))[:140], site)
                agg[key][0] += 1
                agg[key][1] += qms
        queries = [
            {"per_req": c / n, "ms_per_req": t / n, "sql": k[0], "site": k[1]}
            for k, (c, t) in sorted(agg.items(), key=lambda kv: (-kv[1][0], -kv[1][1]))
        ]
        stats = pstats.Stats(rows[0][2])
        for r in rows[1:]:
            stats.add(r[2])
        funcs = []
        for (fname, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():
            funcs.append((fname, line, func, nc / n, tt * 1000 / n, ct * 1000 / n))
        own = [f for f in funcs if f[0].startswith(root) and not f[0].startswith(venv) and "/bench/" not in f[0]]
        short = lambda f: f"{Path(f[0]).relative_to(ROOT) if f[0].startswith(root) else f[0].split('site-packages/')[-1]}:{f[2]}"
        out[step] = {
            "n": n,
            "plain_n": len(pl),
            "plain_wall_ms": percentile(sorted(x[0] for x in pl), 50) if pl else None,
            "plain_cpu_ms": percentile(sorted(x[1] for x in pl), 50) if pl else None,
            "ms_median": percentile(ms, 50),
            "queries_median": nq[n // 2],
            "queries_max": nq[-1],
            "statements_median": nsql[n // 2],
            "statements_max": nsql[-1],
            "sql_ms_median": percentile(sql_ms, 50),
            "queries": queries,
            "app_cumulative": [
                {"fn": short(f), "calls": f[3], "cum_ms": f[5]} for f in sorted(own, key=lambda f: -f[5])[:10]
            ],
            "tottime": [
                {"fn": short(f), "calls": f[3], "own_ms": f[4]} for f in sorted(funcs, key=lambda f: -f[4])[:10]
            ],
            "breakdown": breakdown(funcs),
        }
    print(json.dumps(out))

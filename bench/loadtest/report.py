"""The load test's report: what one run measured, printed with its targets and database checks,
and saved as JSON under bench/results/.

Imported by bench/annotate_load.py and bench.loadtest.profiling (``percentile``).
"""

from __future__ import annotations

import argparse
import math
import platform
from dataclasses import dataclass

from bench import common
from bench.loadtest.procstat import CLK_TCK

TARGET_P95_MS = 100.0
TARGET_JUDGMENTS_PER_S = 150.0
TARGET_CPU_MS_PER_JUDGMENT = 15.0  # issue 16: gunicorn + PostgreSQL, C=50
TARGET_QUERIES_PER_PAGE = 30  # issue 16: a 4-judgment page with its check and its next page
PAGE_STEPS = ("next (redirect)", "rating page", "submit", "check page", "check submit")

STEP_ORDER = [
    "login page", "login", "next (redirect)", "rating page", "submit", "submit (double click)",
    "review (redirect)", "check page", "check submit", "add page", "add submit (skip)", "add submit (add)",
    "late checks page", "finish page",
]


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def fmt_row(cols, widths):
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cols, widths, strict=True)))


@dataclass
class LoadRun:
    """What one run measured, as bench/annotate_load.py gathered it; the figures derive from it."""

    args: argparse.Namespace
    cores: int
    workers: int
    procs: int  # client processes
    database_url: str
    double_clickers: set[int]
    gunicorn_args: list[str]
    setup: dict  # the _setup sub-command's result
    load_before: str
    login_s: float
    t0: float  # the clients' release
    t1: float  # the last client stopped
    machine_before: tuple[float, float]  # procstat.machine_cpu()
    machine_after: tuple[float, float]
    own_before: object  # os.times() of this process
    own_after: object
    server_cpu: dict[str, float]  # ms per group, procstat.CpuSampler.stop()
    clients: dict  # clients.gather()
    check: dict  # the _check sub-command's result
    srv_lat: dict[str, list[float]]  # server.server_latencies()
    profile: dict | None  # the _profile sub-command's result

    # The load window runs from the release of the clients until the last one stopped
    # (its in-flight request answered): every judgment of the run was stored in it.
    @property
    def elapsed(self) -> float:
        return self.t1 - self.t0

    @property
    def t_end(self) -> float:
        return self.t1 if self.args.pages else self.t0 + self.args.duration

    def figures(self) -> dict:
        """Throughput and CPU figures of the window."""
        elapsed, cores, server_cpu = self.elapsed, self.cores, self.server_cpu
        m0, m1, own0, own1 = self.machine_before, self.machine_after, self.own_before, self.own_after
        client_cpu_ms = self.clients["client_cpu_ms"]
        stored = self.check["stored_initial"]
        busy_ms = (m1[0] - m0[0]) * 1000.0 / CLK_TCK
        main_ms = ((own1.user - own0.user) + (own1.system - own0.system)) * 1000.0
        ours_ms = sum(server_cpu.values()) + client_cpu_ms + main_ms
        srv_ms = server_cpu.get("gunicorn", 0.0)
        pg_ms = server_cpu.get("pg_backends", 0.0)
        pgbg_ms = server_cpu.get("pg_background", 0.0)
        total_server_ms = srv_ms + pg_ms + pgbg_ms
        return {
            "stored": stored,
            "jps": stored / elapsed if elapsed > 0 else 0.0,
            "planned": self.t_end - self.t0,
            "busy": (m1[0] - m0[0]) / max(1e-9, m1[1] - m0[1]) * 100.0,
            "others_pct": max(0.0, busy_ms - ours_ms) / max(1e-9, elapsed * 1000.0 * cores) * 100.0,
            "srv_ms": srv_ms,
            "pg_ms": pg_ms,
            "pgbg_ms": pgbg_ms,
            "total_server_ms": total_server_ms,
            "requests_total": sum(len(v) for k, v in self.clients["lat"].items() if k not in ("login page", "login")),
            "per_judgment_all": (total_server_ms + client_cpu_ms) / max(stored, 1),
        }


def query_figures(run: LoadRun, f: dict) -> dict | None:
    """Queries per request and per stored judgment: the in-process walk's SQL statements
    per step (exact, the same views) weighted by how often the load sent each step."""
    if not run.profile:
        return None
    per_step = {s: p["statements_median"] for s, p in run.profile.items() if p.get("statements_median") is not None}
    sent = {s: len(v) for s, v in run.clients["lat"].items() if s in per_step}
    requests = sum(sent.values())
    queries = sum(per_step[s] * n for s, n in sent.items())
    page = sum(per_step.get(s, 0) for s in PAGE_STEPS) if all(s in per_step for s in PAGE_STEPS) else None
    return {
        "per_step": per_step,
        "per_request": queries / max(requests, 1),
        "per_judgment": queries / max(f["stored"], 1),
        "per_page_with_check": page,
        "requests_counted": requests,
    }


def report(run: LoadRun) -> int:
    """Print the report of one run and save its JSON copy; return the exit status: 0 when
    the database checks pass, 1 when one fails."""
    f = run.figures()
    print_settings(run)
    print_latencies(run)
    print_window(run, f)
    print_targets(run, f)
    exit_code = print_integrity(run.check)
    if run.profile and run.args.profile:
        print_profile(run.profile, run.args.profile)
    print()
    save(run, f, note=f"; exit {exit_code}")
    return exit_code


def print_settings(run: LoadRun) -> None:
    args, setup, cores, gargs = run.args, run.setup, run.cores, run.gunicorn_args
    database_url, procs, double_clickers = run.database_url, run.procs, run.double_clickers
    load_before, login_s = run.load_before, run.login_s
    print()
    print(f"=== bench/annotate_load.py: {args.db}, {args.clients} clients, "
          f"{'%d pages each' % args.pages if args.pages else '%.0fs' % args.duration} ===")
    print(f"settings: db={args.db} ({database_url}) clients={args.clients} client_procs={procs} "
          f"double_clickers={len(double_clickers)} add_rate={args.add_rate} think_ms={args.think_ms:g} contexts={setup['contexts']} "
          f"scenarios={setup['scenarios']}")
    print(f"          gunicorn {' '.join(gargs[gargs.index('--workers'):gargs.index('--backlog')])}"
          f"{' --worker-class ' + args.worker_class if args.worker_class else ' (worker class: ' + ('gthread' if args.threads > 1 else 'sync') + ')'}"
          f", DEBUG=False, DJANGO_SETTINGS_MODULE=morale.settings.local, no Celery worker")
    print(f"          app: {setup['scenarios_per_page']} scenarios/page max, {setup['judgments_per_scenario']} judgments/scenario, "
          f"threshold {setup['threshold']}, add-scenario when {setup['add_when']}, canary rate {setup['canary_rate']}")
    print(f"          model: {setup['model_version']} ({setup['scorer']}) predictions for {setup['predictions_ok']}/{setup['scenarios']} "
          f"scenarios, made up front by the real scorer ({setup['distinct_inputs_scored']} distinct inputs scored in "
          f"{setup['score_s']:.1f}s, copied to scenarios with an identical input); scores {setup['score_min']:.2f}..{setup['score_max']:.2f} "
          f"(mean {setup['score_mean']:.2f})")
    print(f"          machine: {cores} cores, Python {platform.python_version()}, load average before {load_before}")
    print(f"          logins: {args.clients} in {login_s:.1f}s (PBKDF2), before the load window")
    print()


def print_latencies(run: LoadRun) -> None:
    """Per step: the clients' count and latencies next to gunicorn's own time for the same requests."""
    lat, srv_lat = run.clients["lat"], run.srv_lat
    widths = [26, 7, 8, 8, 8, 8, 3, 8, 8, 8]
    print(fmt_row(["step", "count", "p50 ms", "p95 ms", "p99 ms", "max ms", "|", "srv p50", "srv p95", "srv p99"], widths))
    srv_key = {"submit": "submit (+double clicks)", "submit (double click)": None,
               "add submit (skip)": "add submit", "add submit (add)": None}
    for step in STEP_ORDER + sorted(k for k in lat if k not in STEP_ORDER):
        v = sorted(lat.get(step, []))
        if not v:
            continue
        sk = srv_key.get(step, step)
        sv = sorted(srv_lat.get(sk, [])) if sk else []
        srv_cols = [f"{percentile(sv, q):.1f}" for q in (50, 95, 99)] if sv else ["", "", ""]
        print(fmt_row([step, len(v)] + [f"{percentile(v, q):.1f}" for q in (50, 95, 99)] + [f"{v[-1]:.0f}", "|"] + srv_cols, widths))
    print("(p50..max: seen by the clients, queueing included; srv: gunicorn's own time per request from its access log,"
          " login excluded; submit srv includes the double clicks, add submit srv both kinds)")
    print()


def print_window(run: LoadRun, f: dict) -> None:
    """The load window: pages, requests, throughput, server and client CPU, the machine, capacity."""
    args, check, cores, elapsed = run.args, run.check, run.cores, run.elapsed
    c = run.clients
    pages, checks, added, waits, finished = c["pages"], c["checks"], c["added"], c["waits"], c["finished"]
    client_cpu_ms, errors = c["client_cpu_ms"], c["errors"]
    stored, jps, planned, requests_total = f["stored"], f["jps"], f["planned"], f["requests_total"]
    srv_ms, pg_ms, pgbg_ms, total_server_ms = f["srv_ms"], f["pg_ms"], f["pgbg_ms"], f["total_server_ms"]
    busy, others_pct, per_judgment_all = f["busy"], f["others_pct"], f["per_judgment_all"]
    print(f"load window: {elapsed:.1f}s, from the release of the logged-in clients until the last one stopped"
          + (f" ({args.pages} pages each or the finish page)" if args.pages
             else f" (requests in flight at the {planned:.0f}s mark answered)"))
    print(f"pages submitted and acknowledged: {len(pages)}; requests: {requests_total} "
          f"({requests_total / elapsed:.0f}/s); grounding checks answered: {len(checks)}; scenarios added: {added}; "
          f"waiting-page polls: {waits}; clients that reached the finish page: {finished}")
    print(f"throughput: {stored} initial judgments stored in the {elapsed:.1f}s load window -> {jps:.1f} judgments/s ("
          + ("" if args.pages else f"{check['stored_in_window']} of them before the {planned:.0f}s mark, i.e. "
             f"{check['stored_in_window'] / max(planned, 1e-9):.1f}/s; ")
          + f"{check['reconfirmed_stored']} reconfirmations besides)")
    print(f"server CPU: gunicorn {srv_ms / 1000:.1f}s"
          + (f", PostgreSQL backends {pg_ms / 1000:.1f}s, PostgreSQL background {pgbg_ms / 1000:.1f}s" if args.db == "postgres" else "")
          + f" -> {total_server_ms / max(stored, 1):.1f} CPU ms per stored judgment"
          + (f" (gunicorn {srv_ms / max(stored, 1):.1f} + PostgreSQL {(pg_ms + pgbg_ms) / max(stored, 1):.1f})" if args.db == "postgres" else "")
          + f", {total_server_ms / max(requests_total, 1):.1f} CPU ms per request")
    q = query_figures(run, f)
    if q is not None:
        print(f"queries (SQL statements per step from the in-process walk after the load, weighted by the steps this "
              f"load sent): {q['per_request']:.1f} per request, {q['per_judgment']:.1f} per stored judgment"
              + (f", {q['per_page_with_check']} per 4-judgment page with its check and next page"
                 if q["per_page_with_check"] is not None else "")
              + "; per step: " + ", ".join(f"{s} {n}" for s, n in q["per_step"].items()))
    print(f"client CPU: {client_cpu_ms / 1000:.1f}s = {client_cpu_ms / elapsed / 10:.0f}% of one core "
          f"({client_cpu_ms / max(requests_total, 1):.2f} ms per request)")
    print(f"machine: busy {busy:.0f}% of {cores} cores during the window; processes outside this bench "
          f"(other users, the kernel) took about {others_pct:.0f}% of the {cores} cores{' -> timings are disturbed' if others_pct >= 10 else ''}"
          f" (load average after {common.loadavg(3)})")
    print(f"capacity estimate: {per_judgment_all:.1f} CPU ms per stored judgment for server + client together, so with "
          f"the {cores} cores to itself this flow tops out near {cores * 1000.0 / max(per_judgment_all, 1e-9):.0f} "
          f"judgments/s (and a server alone, clients elsewhere, near "
          f"{cores * 1000.0 / max(total_server_ms / max(stored, 1), 1e-9):.0f})")
    if errors:
        print("client-side errors / unexpected answers:")
        for k, v in sorted(errors.items(), key=lambda kv: -kv[1]):
            print(f"  {v:6d}  {k}")
    print()


def print_targets(run: LoadRun, f: dict) -> None:
    args, lat, jps = run.args, run.clients["lat"], f["jps"]
    verdict = common.verdict
    rp95 = percentile(sorted(lat.get("rating page", [])), 95)
    sp95 = percentile(sorted(lat.get("submit", [])), 95)
    print(f"targets (set for 50 clients with no think time on this machine; this run: {args.clients} clients, "
          f"think time {args.think_ms:g} ms):")
    print(f"  {verdict(rp95 < TARGET_P95_MS)}  rating page p95 {rp95:.1f} ms   (target < {TARGET_P95_MS:.0f} ms)")
    print(f"  {verdict(sp95 < TARGET_P95_MS)}  submit p95 {sp95:.1f} ms        (target < {TARGET_P95_MS:.0f} ms)")
    print(f"  {verdict(jps >= TARGET_JUDGMENTS_PER_S)}  {jps:.1f} stored judgments/s (target >= {TARGET_JUDGMENTS_PER_S:.0f}"
          f"{' on PostgreSQL' if args.db == 'postgres' else ' on PostgreSQL; informational here'})")
    cpu = f["total_server_ms"] / max(f["stored"], 1)
    print(f"  {verdict(cpu <= TARGET_CPU_MS_PER_JUDGMENT)}  {cpu:.1f} server CPU ms per stored judgment (target <= "
          f"{TARGET_CPU_MS_PER_JUDGMENT:.0f} ms, gunicorn + PostgreSQL"
          f"{'' if args.db == 'postgres' else ' on PostgreSQL; gunicorn alone here'})")
    q = query_figures(run, f)
    if q is not None and q["per_page_with_check"] is not None:
        print(f"  {verdict(q['per_page_with_check'] <= TARGET_QUERIES_PER_PAGE)}  {q['per_page_with_check']} queries per "
              f"4-judgment page with its check and next page (target <= {TARGET_QUERIES_PER_PAGE})")
    print()


def print_integrity(check: dict) -> int:
    """The database checks, PASS/FAIL each; 0 when all pass, else 1."""
    print("database checks:")
    integrity = [
        (check["lost"] == 0, f"lost judgments: {check['lost']} of {check['acknowledged']} acknowledged"
         + (f" e.g. {check['lost_examples']}" if check["lost"] else "")),
        (check["duplicated"] == 0, f"duplicated (annotator, scenario) initial judgments: {check['duplicated']}"),
        (check["wrong_token"] == 0, f"acknowledged judgments stored by another submit than the acknowledged one: {check['wrong_token']}"),
        (check["stored_initial"] == check["acknowledged"],
         f"stored initial judgments = acknowledged: {check['stored_initial']} = {check['acknowledged']}"
         + (f" (unacknowledged stored: {check['unacknowledged_stored']})" if check["unacknowledged_stored"] else "")),
        (check["overfilled"] == 0, f"over-filled scenarios: {check['overfilled']} (max {check['max_per_scenario']} initial "
         f"judgments per scenario, limit {check['capacity']}; {check['scenarios_full']} scenarios full)"),
        (check["counter_drift_scenarios"] == 0 and check["counter_drift_contexts"] == 0,
         f"judgment_count counters match the rows: scenarios off {check['counter_drift_scenarios']}, "
         f"contexts off {check['counter_drift_contexts']}"),
        (check["checks_lost"] == 0 and check["checks_duplicated"] == 0 and check["checks_unacknowledged"] == 0,
         f"grounding checks: {check['checks_acknowledged']} acknowledged, {check['reconfirmed_stored']} reconfirmations "
         f"stored (lost {check['checks_lost']}, duplicated {check['checks_duplicated']}, "
         f"unacknowledged {check['checks_unacknowledged']})"),
        (check["added_stored"] == check["added_acknowledged"],
         f"added scenarios: {check['added_acknowledged']} acknowledged, {check['added_stored']} stored"),
    ]
    for ok, line in integrity:
        print(f"  {common.verdict(ok)}  {line}")
    return 0 if all(ok for ok, _ in integrity) else 1


def print_profile(profile: dict, pages: int) -> None:
    """Per step of the in-process walk: queries with their call sites, and the hottest functions."""
    print()
    print(f"profile: one extra annotator walks {pages} pages in-process after the load (Django test client,"
          " full middleware, no HTTP, no concurrency). First half plain: wall and Python CPU ms (median) of the")
    print("  Django side; second half instrumented: queries per request with the project function that"
          " issued them, SQL ms, hottest functions under cProfile (its ms inflated by the profiler):")
    for step, p in profile.items():
        plain_txt = (f"plain {p['plain_wall_ms']:.1f} ms wall / {p['plain_cpu_ms']:.1f} ms CPU (n={p['plain_n']}); "
                     if p.get("plain_n") else "")
        print(f"  {step}: {plain_txt}{p['queries_median']} queries (max {p['queries_max']}), "
              f"SQL {p['sql_ms_median']:.1f} ms median (n={p['n']})")
        for q in p["queries"]:
            print(f"      x{q['per_req']:<4.1f} {q['ms_per_req']:6.2f} ms  {q['site']:70s}  {q['sql'][:110]}")
        if not p["app_cumulative"]:
            continue
        print("      hottest project functions (cumulative ms per request):  "
              + "; ".join(f"{f['fn']} {f['cum_ms']:.1f}" for f in p["app_cumulative"][:6]))
        print("      cumulative ms per request (cProfile):  "
              + "; ".join(f"{b['what']} {b['cum_ms']:.1f}" for b in p["breakdown"] if b["cum_ms"] >= 0.05))
        print("      hottest functions overall (own ms per request):  "
              + "; ".join(f"{f['fn']} {f['own_ms']:.2f}" for f in p["tottime"][:6]))


def save(run: LoadRun, f: dict, note: str = ""):
    """The JSON copy of the numbers: bench/results/annotate_load-<db>-<time>.json."""
    lat, srv_lat = run.clients["lat"], run.srv_lat
    return common.save_results(
        f"annotate_load-{run.args.db}",
        {
            "args": vars(run.args), "workers": run.workers, "setup": run.setup, "check": run.check,
            "elapsed_s": run.elapsed, "judgments_per_s": f["jps"], "server_cpu_ms": run.server_cpu,
            "client_cpu_ms": run.clients["client_cpu_ms"], "machine_busy_pct": f["busy"], "others_pct": f["others_pct"],
            "cpu_ms_per_judgment_server_and_client": f["per_judgment_all"], "errors": run.clients["errors"],
            "profile": run.profile, "queries": query_figures(run, f),
            "latency_ms": {k: {q: percentile(sorted(v), q) for q in (50, 95, 99)} | {"n": len(v)} for k, v in lat.items()},
            "server_latency_ms": {k: {q: percentile(sorted(v), q) for q in (50, 95, 99)} | {"n": len(v)} for k, v in srv_lat.items()},
        },
        indent=1,
        default=str,
        note=note,
    )

#!/usr/bin/env python
"""Load test of the annotator flow: N simulated annotators over HTTP against gunicorn.

    .venv/bin/python bench/annotate_load.py                  # PostgreSQL, 50 clients, 30 s
    .venv/bin/python bench/annotate_load.py --db sqlite      # the embedded SQLite default
    .venv/bin/python bench/annotate_load.py --pages 5 --clients 10 --contexts 300

What one run does, its report and its exit status: bench/README.md, "annotate_load.py";
its parts live in bench/loadtest/.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file: `bench` and the project importable

from bench import common  # noqa: E402
from bench.common import PY  # noqa: E402
from bench.loadtest import clients, database, procstat, profiling, server  # noqa: E402
from bench.loadtest.report import LoadRun, report  # noqa: E402

PG_DB = "morale_bench"
SUB_COMMANDS = {"_setup": database.sub_setup, "_check": database.sub_check, "_profile": profiling.sub_profile}

log = functools.partial(common.log, stamp="bench")


def main(argv=None) -> int:
    if len(sys.argv) > 1 and sys.argv[1] in SUB_COMMANDS:  # the Django-side steps, run in a subprocess
        SUB_COMMANDS[sys.argv[1]](sys.argv[2:])
        return 0

    cores = os.cpu_count() or 1
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    ap.add_argument("--pages", type=int, default=0, help="pages per client instead of --duration")
    ap.add_argument("--contexts", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=0, help=f"gunicorn workers (default: 2 x cores = {2 * cores})")
    ap.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker (default 1)")
    ap.add_argument("--worker-class", default="", help="gunicorn worker class (default: gunicorn's choice)")
    ap.add_argument("--keep-alive", type=int, default=5,
                    help="gunicorn keep-alive seconds (default 5, as scripts/run.sh; threaded workers only)")
    ap.add_argument("--client-procs", type=int, default=1, help="client processes the annotator threads are spread over")
    ap.add_argument("--double-click", type=float, default=0.05, help="share of clients that post every submit twice")
    ap.add_argument("--add-rate", type=float, default=0.10, help="on the add-scenario page: share that adds one")
    ap.add_argument("--think-ms", type=float, default=0.0,
                    help="mean think time before each form is sent (exponential; default 0: no think time)")
    ap.add_argument("--score", type=int, default=-1, help="score only this many scenarios up front (-1: all)")
    ap.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/postgres", help="PostgreSQL admin URL")
    ap.add_argument("--pg-db", default=PG_DB,
                    help=f"the throw-away database, dropped and recreated (default {PG_DB}; its name must contain 'bench')")
    ap.add_argument("--keep", action="store_true", help="keep the database (and the temporary folder)")
    ap.add_argument("--profile", type=int, default=0, metavar="PAGES",
                    help="afterwards, walk PAGES pages in-process with one extra annotator and print queries/ms per step")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    workers = args.workers or 2 * cores
    if "bench" not in args.pg_db:
        ap.error("--pg-db must name a throw-away database: its name must contain 'bench'")

    tmp = Path(tempfile.mkdtemp(prefix=f"annotate_load-{args.db}-"))
    (tmp / "var").mkdir()
    (tmp / "media").mkdir()
    if args.db == "postgres":
        database_url = common.pg_url_for(args.pg_url, args.pg_db)
    else:
        database_url = common.sqlite_url(tmp)
    env = common.bench_env(
        database_url=database_url,
        folder=tmp,
        STATIC_ROOT=str(tmp / "static"),
        CELERY_TASK_ALWAYS_EAGER="False",
        ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        PYTHONUNBUFFERED="1",
    )
    gunicorn = None
    exit_code = 2
    load_before = common.loadavg(3)
    try:
        # 1. database
        t = time.perf_counter()
        if args.db == "postgres":
            common.pg_recreate(args.pg_url, args.pg_db)
        common.migrate(env, log_stderr=log)
        log(f"fresh {args.db} database migrated in {time.perf_counter() - t:.1f}s ({database_url})")
        t = time.perf_counter()
        setup = common.run_json(
            [PY, __file__, "_setup", "--contexts", str(args.contexts), "--clients", str(args.clients),
             "--score", str(args.score), "--seed", str(args.seed)],
            env,
            "setup",
            log_stderr=log,
        )
        log(
            f"setup: {setup['contexts']} contexts, {setup['scenarios']} scenarios, {setup['annotators']} annotators; "
            f"{setup['predictions_ok']} predictions of {setup['model_version']}: {setup['distinct_inputs_scored']} distinct "
            f"inputs scored in {setup['score_s']:.1f}s ({setup['distinct_inputs_scored'] / max(setup['score_s'], 1e-9):.0f} pairs/s)"
        )

        # 2. server
        port = server.free_port()
        access_log, server_log = tmp / "access.log", tmp / "gunicorn.log"
        gunicorn, gargs = server.start_gunicorn(
            env=env, port=port, workers=workers, threads=args.threads, worker_class=args.worker_class, keep_alive=args.keep_alive,
            access_log=access_log, server_log=server_log,
        )
        server.wait_until_up(port, gunicorn)
        log(f"gunicorn up on 127.0.0.1:{port} ({workers} workers x {args.threads} threads)")

        # 3. clients: log in (not timed as load), then release them all at once
        n_double = max(1, round(args.clients * args.double_click)) if args.double_click > 0 else 0
        double_clickers = set(random.Random(args.seed).sample(range(args.clients), min(n_double, args.clients)))
        cfg = {
            "seed": args.seed,
            "pages": args.pages,
            "add_rate": args.add_rate,
            "think_ms": args.think_ms,
            "double_clickers": double_clickers,
        }
        base = f"http://127.0.0.1:{port}"
        procs = max(1, min(args.client_procs, args.clients))
        ps, go_evt, deadline_value, result_q, login_s = clients.run_clients(
            base=base, n=args.clients, procs=procs, cfg=cfg
        )
        log(f"{args.clients} annotators logged in ({login_s:.1f}s); load starts")
        access_skip = len(access_log.read_text().splitlines())
        sampler = procstat.CpuSampler(gunicorn.pid, args.pg_db if args.db == "postgres" else None)
        sampler.start()
        m0 = procstat.machine_cpu()
        own0 = os.times()
        t0 = time.time()
        deadline_value.value = 0.0 if args.pages else t0 + args.duration
        go_evt.set()
        results = [result_q.get(timeout=args.duration + 900 if not args.pages else 3600) for _ in ps]
        t1 = time.time()
        m1 = procstat.machine_cpu()
        own1 = os.times()
        server_cpu = sampler.stop()
        for p in ps:
            p.join(timeout=10)
        log(f"load done in {t1 - t0:.1f}s")

        # 4. gather, then check the database against what the clients were told
        gathered = clients.gather(results)
        ack_path = tmp / "acknowledged.json"
        t_end = t1 if args.pages else t0 + args.duration
        ack_path.write_text(json.dumps({
            "pages": gathered["pages"], "checks": gathered["checks"], "added": gathered["added"],
            "t0": t0, "t1": t1, "t_end": t_end,
        }))
        check = common.run_json([PY, __file__, "_check", "--ack", str(ack_path)], env, "check", log_stderr=log)
        srv_lat = server.server_latencies(access_log, access_skip)

        # The in-process walk after the load: its query counts per step go beside the CPU
        # figures in every report (4 pages when --profile is not given: half of them counted).
        profile = common.run_json(
            [PY, __file__, "_profile", "--pages", str(args.profile or 4)], env, "profile", log_stderr=log
        )

        # 5. report
        exit_code = report(LoadRun(
            args=args, cores=cores, workers=workers, procs=procs, database_url=database_url,
            double_clickers=double_clickers, gunicorn_args=gargs, setup=setup, load_before=load_before,
            login_s=login_s, t0=t0, t1=t1, machine_before=m0, machine_after=m1, own_before=own0, own_after=own1,
            server_cpu=server_cpu, clients=gathered, check=check, srv_lat=srv_lat, profile=profile,
        ))
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        exit_code = 2
    finally:
        common.stop_process(gunicorn)
        if gunicorn is not None and exit_code == 2:
            try:
                sys.stderr.write("--- gunicorn log (tail) ---\n" + (tmp / "gunicorn.log").read_text()[-3000:])
            except OSError:
                pass
        if args.keep:
            print(f"kept: database {database_url}, files in {tmp}")
            print(f"      (PostgreSQL: psql {common.pg_url_for(args.pg_url, args.pg_db)})" if args.db == "postgres" else "")
        else:
            if args.db == "postgres":
                try:
                    common.pg_drop(args.pg_url, args.pg_db)
                except Exception as exc:  # noqa: BLE001
                    log(f"could not drop {args.pg_db}: {exc}")
            shutil.rmtree(tmp, ignore_errors=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())

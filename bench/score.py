#!/usr/bin/env python
"""Scoring speed: batching, the Celery path's overhead, and a head-only rescore from the feature cache.

    .venv/bin/python bench/score.py                                  # PostgreSQL + Redis (production shape)
    .venv/bin/python bench/score.py --db sqlite --broker filesystem  # the embedded default
    .venv/bin/python bench/score.py --quick                          # fewer pairs, one round

What it measures and prints, and what it throws away: bench/README.md, "score.py".
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file: `bench` and the project importable

from bench import common  # noqa: E402
from bench.common import ROOT  # noqa: E402

PG_DB = "morale_bench_score"
BATCH = 32

log = functools.partial(common.log, stamp="", to_stdout=True)


def configure(args, tmp: Path) -> dict[str, str]:
    """Environment for this process and the worker: throw-away database, broker and media."""
    if args.db == "postgres":
        common.pg_recreate(args.pg_url, PG_DB)
        database_url = common.pg_url_for(args.pg_url, PG_DB)
    else:
        database_url = common.sqlite_url(tmp)
    if args.broker == "redis":
        import redis

        broker = f"{args.redis_url.rstrip('/')}/{args.redis_db}"
        redis.Redis.from_url(broker).flushdb()
    else:
        broker = "filesystem://localhost/"
    env = common.bench_env(
        database_url=database_url,
        folder=tmp,
        CELERY_BROKER_URL=broker,
        MORALE_SCORER_BATCH_SIZE=str(BATCH),
        CUDA_VISIBLE_DEVICES="",
        OMP_NUM_THREADS=str(args.torch_threads),
        MKL_NUM_THREADS=str(args.torch_threads),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    os.environ.update(env)
    return env


def drop_database(args) -> None:
    if args.db == "postgres":
        from django.db import connections

        connections.close_all()
        common.pg_drop(args.pg_url, PG_DB)


# --- data ---------------------------------------------------------------------------------
def write_photos(media: Path) -> list[tuple[str, str]]:
    """Real photographs as JPEG files under MEDIA_ROOT: (storage name, sha256)."""
    from PIL import Image
    from skimage import data

    folder = media / "contexts" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    photos = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left"):
        image = getattr(data, name)() if name != "motorcycle_left" else data.stereo_motorcycle()[0]
        buffer = io.BytesIO()
        Image.fromarray(image).convert("RGB").save(buffer, format="JPEG", quality=90)
        (folder / f"{name}.jpg").write_bytes(buffer.getvalue())
        photos.append((f"contexts/bench/{name}.jpg", hashlib.sha256(buffer.getvalue()).hexdigest()))
    return photos


SETTINGS = [
    "a child crossing a busy street", "an elderly man at a bus stop", "a crying toddler in a supermarket",
    "a classroom during an exam", "a park on a sunny afternoon", "a crowded train at rush hour",
    "a hospital waiting room", "a kitchen during a family dinner",
]
ACTIONS = [
    "helping them across carefully", "taking a photo without asking", "offering a seat and some water",
    "shouting at them to hurry up", "quietly stealing a wallet", "calling for help on the phone",
    "sharing an umbrella in the rain", "ignoring them and walking away", "pushing past them rudely",
    "explaining the rules patiently", "recording them to post online", "returning a dropped glove",
]


def make_scenarios(photos, n_contexts: int, per_context: int, tag: str) -> list[int]:
    """Contexts and scenarios by bulk insert (the services' image checks are not what is measured)."""
    from annotation.models import Context, Scenario

    contexts = Context.objects.bulk_create(
        [
            Context(
                image=photos[i % len(photos)][0],
                image_sha256=photos[i % len(photos)][1],
                setting=f"{SETTINGS[i % len(SETTINGS)]} ({tag} {i})",
            )
            for i in range(n_contexts)
        ],
        batch_size=2000,
    )
    scenarios = Scenario.objects.bulk_create(
        [
            Scenario(context=context, text=f"{ACTIONS[(c * per_context + k) % len(ACTIONS)]}, variant {k}")
            for c, context in enumerate(contexts)
            for k in range(per_context)
        ],
        batch_size=2000,
    )
    return [s.pk for s in scenarios]


# --- 1. batched vs one at a time -------------------------------------------------------------
def pairs_per_second(scorer, inputs, batch: int) -> float:
    scorer.score(inputs[:batch])  # warm: first-call allocations, lazy tokenizer state
    start = time.perf_counter()
    for i in range(0, len(inputs), batch):
        results = scorer.score(inputs[i : i + batch])
        assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    return len(inputs) / (time.perf_counter() - start)


def bench_batching(args, tmp: Path, photo_paths: list[str]) -> list[tuple[str, int, float, float]]:
    from modelloop.scoring import ScoringInput
    from modelloop.scoring.hf_vlm import HFVLMZeroShotScorer
    from modelloop.scoring.offline import EfficientNetMiniLMHeadScorer, ScoreHead, ZeroShotTextBaselineScorer, save_head
    from modelloop.testing.tiny_vlms import build_tiny_vlm

    def inputs(n: int) -> list[ScoringInput]:
        return [
            ScoringInput(i, photo_paths[i % len(photo_paths)], SETTINGS[i % len(SETTINGS)], f"{ACTIONS[i % len(ACTIONS)]} ({i})")
            for i in range(n)
        ]

    save_head(ScoreHead(), tmp / "head.safetensors")
    tiny = build_tiny_vlm("qwen2_vl", tmp / "tiny-qwen2-vl")
    scorers = [
        ("zero-shot text baseline (default)", lambda: ZeroShotTextBaselineScorer(config={}), args.n_text),
        (
            "EfficientNet-Lite0+MiniLM head",
            lambda: EfficientNetMiniLMHeadScorer(config={}, head_weights_path=str(tmp / "head.safetensors")),
            args.n_image,
        ),
        ("tiny Qwen2-VL zero-shot (hf-vlm)", lambda: HFVLMZeroShotScorer(config={"backbone_path": str(tiny), "batch_size": BATCH}), args.n_image),
    ]
    rows = []
    for label, build, n in scorers:
        scorer = build()
        batched = pairs_per_second(scorer, inputs(n), BATCH)
        single = pairs_per_second(scorer, inputs(n), 1)
        log(f"{label}: {batched:.1f} pairs/s batched, {single:.1f} one at a time")
        rows.append((label, n, batched, single))
    return rows


# --- 1b. feature extraction: each distinct image encoded once --------------------------------
def distinct_photos(media: Path, n: int, tag: str) -> list[tuple[str, str]]:
    """n distinct JPEG files (storage name, sha256): the bench photos, each cropped differently."""
    from PIL import Image

    folder = media / "contexts" / f"distinct-{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted((media / "contexts" / "bench").glob("*.jpg"))
    out = []
    for i in range(n):
        with Image.open(sources[i % len(sources)]) as img:
            w, h = img.size
            dx, dy = (i * 7) % max(1, w // 4), (i * 11) % max(1, h // 4)
            crop = img.convert("RGB").crop((dx, dy, dx + w * 3 // 4, dy + h * 3 // 4))
        buffer = io.BytesIO()
        crop.save(buffer, format="JPEG", quality=90)
        (folder / f"{i}.jpg").write_bytes(buffer.getvalue())
        out.append((f"contexts/distinct-{tag}/{i}.jpg", hashlib.sha256(buffer.getvalue()).hexdigest()))
    return out


def bench_extraction(args, tmp: Path) -> list[tuple[str, int, int, float]]:
    """pairs/s of ``features_for`` (EfficientNet-Lite0 + MiniLM, nothing cached yet) with 1 and
    with 3.5 scenarios per image (3 and 4 alternating, as MM-SCALE's 32,212 / 9,260)."""
    from annotation.models import Context, Scenario
    from modelloop import services
    from modelloop.scoring.features import image_model, text_model
    from modelloop.scoring.offline import EfficientNetMiniLMBackbone

    image_model(), text_model()  # loaded before the clock starts
    backbone = EfficientNetMiniLMBackbone()
    rows = []
    for label, per_image in (("1 scenario per image", [1]), ("3.5 scenarios per image", [3, 4])):
        n_images = 0
        counts = []
        while sum(counts) < args.n_extract:
            counts.append(per_image[n_images % len(per_image)])
            n_images += 1
        photos = distinct_photos(tmp / "media", n_images, tag=label.split()[0].replace(".", ""))
        contexts = Context.objects.bulk_create(
            [Context(image=name, image_sha256=sha, setting=f"{SETTINGS[i % len(SETTINGS)]} ({label} {i})")
             for i, (name, sha) in enumerate(photos)]
        )
        scenarios = Scenario.objects.bulk_create(
            [Scenario(context=c, text=f"{ACTIONS[(i + k) % len(ACTIONS)]}, variant {k}")
             for i, (c, n) in enumerate(zip(contexts, counts)) for k in range(n)]
        )
        ids = [s.pk for s in scenarios]
        start = time.perf_counter()
        _, errors = services.features_for(backbone, ids)
        seconds = time.perf_counter() - start
        assert not any(errors), [e for e in errors if e][:3]
        log(f"extraction, {label}: {len(ids)} pairs of {n_images} images in {seconds:.2f} s = {len(ids) / seconds:.1f} pairs/s")
        rows.append((label, len(ids), n_images, len(ids) / seconds))
    return rows


# --- 2. Celery overhead ---------------------------------------------------------------------
class Worker:
    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "morale", "worker", "-Q", "gpu", "--concurrency", "1",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def wait(self, predicate, what: str, timeout: float = 300.0, poll: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the worker exited while waiting for {what}:\n{self.log_path.read_text()[-3000:]}")
            if predicate():
                return
            time.sleep(poll)
        raise RuntimeError(f"timed out waiting for {what}:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        common.stop_process(self.proc)
        self.log.close()


def last_stored(version, ids) -> float:
    from django.db.models import Max

    from modelloop.models import Prediction

    return Prediction.objects.filter(model_version=version, scenario_id__in=ids).aggregate(t=Max("created_at"))["t"].timestamp()


def bench_celery(args, worker: Worker, photos) -> tuple[list[float], list[float], list[float]]:
    """Seconds per round: direct loop, enqueue -> last prediction, and the worker's own task run times."""
    from modelloop import services
    from modelloop.models import Prediction
    from modelloop.scoring.offline import ZeroShotTextBaselineScorer

    version = services.model_version_current()
    warm_id, *ids = make_scenarios(photos, (args.pairs + 1 + 3) // 4, 4, "celery")[: args.pairs + 1]
    worker.wait(lambda: type(version).objects.get(pk=version.pk).load_checked_at is not None, "the worker's warm-up")
    services.scoring_enqueue(scenario_ids=[warm_id])  # one task end to end before the clock starts
    worker.wait(lambda: Prediction.objects.filter(scenario_id=warm_id).exists(), "the warm-up task")

    scorer = ZeroShotTextBaselineScorer(config={})
    inputs = services.scoring_inputs_for(scenario_ids=ids)
    scorer.score(inputs[:BATCH])
    direct, celery, in_tasks = [], [], []
    for round_ in range(args.rounds):
        start = time.perf_counter()
        for i in range(0, len(inputs), BATCH):
            scorer.score(inputs[i : i + BATCH])
        direct.append(time.perf_counter() - start)

        Prediction.objects.filter(scenario_id__in=ids).delete()
        log_mark = worker.log_path.stat().st_size
        start = time.time()
        services.scoring_enqueue(scenario_ids=ids)  # autocommit: sent at once, tasks of 32
        worker.wait(
            lambda: Prediction.objects.filter(scenario_id__in=ids).count() == len(ids), "the worker to score", poll=0.25
        )
        celery.append(last_stored(version, ids) - start)
        with open(worker.log_path) as handle:
            handle.seek(log_mark)
            in_tasks.append(sum(float(t) for t in re.findall(r"score_scenarios\[[^]]+\] succeeded in ([0-9.]+)s", handle.read())))
        log(f"round {round_ + 1}: direct {direct[-1]:.2f} s, through Celery {celery[-1]:.2f} s for {len(ids)} pairs "
            f"(inside the tasks {in_tasks[-1]:.2f} s)")
    return direct, celery, in_tasks


# --- 3. rescore from the cache --------------------------------------------------------------
def bench_rescore(args, worker: Worker | None, photos, tmp: Path) -> tuple[float, float | None]:
    import numpy as np
    import torch

    from annotation.models import Context, Scenario
    from modelloop import services
    from modelloop.models import FeatureCacheEntry, Prediction
    from modelloop.scoring.features import BACKBONE_REF, FEATURE_DIM
    from modelloop.scoring.offline import EfficientNetMiniLMHeadScorer, ScoreHead, save_head

    Context.objects.update(is_active=False)  # the Celery part's scenarios are not part of this rescore
    log(f"inserting {common.MM_SCALE_SCENARIOS} scenarios and their synthetic {FEATURE_DIM}-d cached features ...")
    ids = make_scenarios(photos, common.MM_SCALE_SCENARIOS // 4, 4, "cache")
    rng = np.random.default_rng(0)
    keys = {
        sid: services.content_key(sha, setting, text)
        for start in range(0, len(ids), 5000)
        for sid, sha, setting, text in Scenario.objects.filter(pk__in=ids[start : start + 5000]).values_list(
            "id", "context__image_sha256", "context__setting", "text"
        )
    }
    for start in range(0, len(ids), 2000):
        chunk = ids[start : start + 2000]
        vectors = rng.standard_normal((len(chunk), FEATURE_DIM), dtype=np.float32)
        rows = [
            FeatureCacheEntry(backbone_ref=BACKBONE_REF, scenario_id=sid, content_key=keys[sid], dim=FEATURE_DIM, vector=v.tobytes())
            for sid, v in zip(chunk, vectors)
        ]
        FeatureCacheEntry.objects.bulk_create(rows, batch_size=500)

    def head_version(name: str, seed: int):
        torch.manual_seed(seed)
        save_head(ScoreHead(), tmp / f"{name}.safetensors")
        return services.model_version_register(
            name=name, scorer="efficientnet-minilm-mlp", config={}, head_weights_path=tmp / f"{name}.safetensors"
        )

    version = head_version("bench-head-a", 0)
    services.scorer_for(version)  # loaded, as on a warm worker

    def backbone_must_not_run(self, inputs):
        raise AssertionError(f"the backbone ran on {len(inputs)} pairs: the cache was not used")

    original = EfficientNetMiniLMHeadScorer.features
    EfficientNetMiniLMHeadScorer.features = backbone_must_not_run
    try:
        start = time.perf_counter()
        todo = services.scenario_ids_missing_prediction(model_version=version)
        for i in range(0, len(todo), services.CACHED_CHUNK_SIZE):
            services.scenarios_score(scenario_ids=todo[i : i + services.CACHED_CHUNK_SIZE], model_version=version)
        direct = time.perf_counter() - start
    finally:
        EfficientNetMiniLMHeadScorer.features = original
    stored = Prediction.objects.filter(model_version=version, status="ok").count()
    assert stored == len(ids), f"{stored} predictions stored for {len(ids)} scenarios"
    log(f"head-only rescore of {len(ids)} scenarios from the cache, in-process: {direct:.2f} s")

    if worker is None:
        return direct, None
    # Through the worker: make it load the backbones first (a version on the same backbone
    # scoring one uncached scenario), then promote a new head and time until the last prediction.
    extra = make_scenarios(photos, 1, 1, "extra")
    services.scoring_enqueue(scenario_ids=extra, model_version_id=version.pk)
    worker.wait(lambda: Prediction.objects.filter(model_version=version, scenario_id__in=extra).exists(), "the worker to load the backbones")
    second = head_version("bench-head-b", 1)
    start = time.time()
    services.model_version_promote(model_version=second)
    worker.wait(lambda: Prediction.objects.filter(model_version=second).count() == len(ids) + 1, "the promoted head's rescore", poll=0.25)
    via_worker = last_stored(second, ids + extra) - start
    log(f"promote -> last prediction through the worker: {via_worker:.2f} s")
    return direct, via_worker


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--broker", choices=["redis", "filesystem"], default="redis")
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    parser.add_argument("--redis-db", type=int, default=14)
    parser.add_argument("--pairs", type=int, default=320, help="pairs in the Celery overhead comparison")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--torch-threads", type=int, default=1,
        help="CPU threads per process (this process and the worker alike); on a shared 2-CPU machine 2 OpenMP "
        "threads ran up to 5x slower than 1 whenever another process held a core",
    )
    parser.add_argument("--n-text", type=int, default=128, help="pairs per rate measurement, text baseline")
    parser.add_argument("--n-image", type=int, default=64, help="pairs per rate measurement, image scorers")
    parser.add_argument("--quick", action="store_true", help="96 pairs, 1 round, 32-pair rate measurements")
    parser.add_argument("--n-extract", type=int, default=140, help="pairs per feature-extraction measurement")
    parser.add_argument("--skip", nargs="*", default=[], choices=["batching", "extraction", "celery", "rescore"])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (worker log, media) and the database")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.rounds, args.n_text, args.n_image, args.n_extract = 96, 1, 32, 32, 35

    tmp = Path(tempfile.mkdtemp(prefix="morale-bench-score-"))
    env = configure(args, tmp)
    import django
    import torch
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    photos = write_photos(tmp / "media")
    log(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}; db {args.db}, broker {args.broker}")

    worker = None
    try:
        batching = [] if "batching" in args.skip else bench_batching(args, tmp, [str(tmp / "media" / p) for p, _ in photos])
        extraction = [] if "extraction" in args.skip else bench_extraction(args, tmp)
        if not {"celery", "rescore"} <= set(args.skip):
            worker = Worker(env, tmp / "worker.log")
        direct = celery = in_tasks = None
        if "celery" not in args.skip:
            direct, celery, in_tasks = bench_celery(args, worker, photos)
        rescore = via_worker = None
        if "rescore" not in args.skip:
            rescore, via_worker = bench_rescore(args, worker, photos, tmp)
    finally:
        if worker is not None:
            worker.stop()

    print()
    print(f"== bench/score.py: {args.db} + {args.broker}, batch size {BATCH}, CPU only, {args.torch_threads} torch thread(s), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} ==")
    if batching:
        print(f"{'scorer':<38} {'pairs':>5} {'batched':>12} {'one at a time':>14} {'speed-up':>9}")
        for label, n, batched, single in batching:
            print(f"{label:<38} {n:>5} {batched:>8.1f} p/s {single:>10.1f} p/s {batched / single:>8.1f}x")
    if extraction:
        print(f"Feature extraction (features_for, EfficientNet-Lite0 + MiniLM, empty caches, batches of {BATCH}):")
        for label, n, n_images, rate in extraction:
            print(f"  {label:<24} {n:>4} pairs of {n_images:>3} images: {rate:7.1f} pairs/s")
        rate_one, rate_mm = extraction[0][3], extraction[-1][3]
        print(f"  a full extraction at MM-SCALE size ({common.MM_SCALE_SCENARIOS} pairs of {common.MM_SCALE_CONTEXTS} "
              f"images), estimated from the measured 3.5-per-image rate: {common.MM_SCALE_SCENARIOS / rate_mm / 60:.1f} min "
              f"(encoding every pair's image, i.e. at the 1-per-image rate: {common.MM_SCALE_SCENARIOS / rate_one / 60:.1f} min)")
    if celery:
        ratios = [c / d for d, c in zip(direct, celery)]
        ratio = statistics.median(ratios)
        print(f"Celery path, {args.pairs} pairs, default scorer, {args.rounds} paired rounds (direct s / worker s: "
              f"{', '.join(f'{d:.2f}/{c:.2f}' for d, c in zip(direct, celery))})")
        print(f"  best: direct {min(direct):.2f} s, worker {min(celery):.2f} s; median ratio worker/direct {ratio:.3f}, "
              f"overhead {ratio - 1:+.1%}; target <= 15%: {common.verdict(ratio - 1 <= 0.15, missed='MISS')}")
        between = statistics.median((c - t) / c for c, t in zip(celery, in_tasks))
        print(f"  of the worker's time, outside its task bodies (broker, ack, dispatch; median): {between:.1%}")
    if rescore is not None:
        print(f"Rescore {common.MM_SCALE_SCENARIOS} scenarios from cached 1664-d features, head only (DB read + head + "
              f"predictions written): {rescore:.2f} s; target < 5 s: {common.verdict(rescore < 5, missed='MISS')}")
        if via_worker is not None:
            from modelloop.services import CACHED_CHUNK_SIZE

            print(f"  for information, the same through the worker (promote -> last prediction stored, tasks of "
                  f"{CACHED_CHUNK_SIZE}, new head loaded by the worker): {via_worker:.2f} s")
    if args.keep:
        print(f"kept: {tmp} (worker.log inside) and the database {env['DATABASE_URL']}")
    else:
        drop_database(args)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

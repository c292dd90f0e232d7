"""What a Celery worker serving queue ``gpu`` does when it starts.

Each pool process loads the current model version in a background thread right after it
is forked, so the first task finds the model warm and a missing or broken model
directory shows up at start: one clear ERROR line in the log and ``load_error`` on the
version in the admin. The load never runs in the signal handler itself: Celery kills a
pool process that takes more than ``worker_proc_alive_timeout`` (4 s) to report for work,
and a 7B checkpoint takes longer; a broken one would become a crash loop. The first
task waits for the load (``services.scorer_for`` holds a lock while loading).

With ``MORALE_VLM_PATH`` set, the warm-up first registers a "hf-vlm-zero-shot" version
for that checkpoint and promotes it if the built-in baseline is still current.

Nothing at module level touches Django models: ``morale.celery`` imports this before
Django is set up. Connected in ``morale/celery.py``.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings

logger = logging.getLogger(__name__)

SCORING_QUEUE = "gpu"
_serves_scoring_queue = False  # set in the main process, inherited by forked pool processes


def on_worker_init(worker) -> None:
    """Main process, queues known: note whether this worker scores (a default-queue worker loads no model)."""
    global _serves_scoring_queue
    _serves_scoring_queue = SCORING_QUEUE in worker.app.amqp.queues


def on_worker_process_init() -> None:
    """Each pool process (the process itself with ``--pool solo``): warm up in the background."""
    if _serves_scoring_queue:
        threading.Thread(target=_warm_up_thread, name="morale-model-warm-up", daemon=True).start()


def _warm_up_thread() -> None:
    from django.db import connections

    try:
        warm_up()
    finally:
        connections.close_all()  # this thread's connections only


def warm_up() -> None:
    """Register/promote ``MORALE_VLM_PATH``'s version if set, then load the current version.

    Never raises: a version that cannot be loaded is logged and recorded by
    ``services.scorer_for``; anything else (database down) is logged, and the first
    task tries again.
    """
    from . import services
    from .scoring import ScoringError

    try:
        if settings.MORALE_VLM_PATH:
            use_vlm_path(settings.MORALE_VLM_PATH)
        version = services.model_version_current_or_none()
        if version is not None:
            services.scorer_for(version)
    except ScoringError:
        pass  # already logged and stored on the version
    except Exception:  # noqa: BLE001 - a warm-up must never take the worker down
        logger.exception("Model warm-up failed; the first scoring task will load the model instead.")


def use_vlm_path(path: str) -> bool:
    """Put the VLM checkpoint at ``path`` in the loop as a zero-shot scorer, if nothing better is current.

    Registers the version (once), and while the built-in baseline is current, loads it
    and promotes it. A checkpoint that does not load is not promoted: the error is
    logged and shown on the registered version, and the baseline keeps scoring.
    Returns whether it was promoted.
    """
    from . import services
    from .baseline import BASELINE_NAME
    from .scoring import ScoringError

    version = services.model_version_for_vlm_path(path)
    current = services.model_version_current_or_none()
    if current is not None and current.pk == version.pk:
        return False
    if current is not None and current.name != BASELINE_NAME:
        logger.info(
            "MORALE_VLM_PATH: version %r is registered but not promoted, because %r is current; "
            "promote it in the admin if wanted.",
            version.name,
            current.name,
        )
        return False
    try:
        services.scorer_for(version)
    except ScoringError:
        logger.error("MORALE_VLM_PATH=%s is not used; the current version keeps scoring.", path)
        return False
    promoted = services.model_version_promote_over_baseline(model_version=version)
    if promoted:
        logger.info("MORALE_VLM_PATH: promoted %r; every scenario is queued for rescoring.", version.name)
    return promoted

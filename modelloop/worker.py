"""What a Celery worker serving queue ``gpu`` does when it starts: warm the current model up
in a background thread (and put ``MORALE_VLM_PATH`` in the loop). Why so: docs/scoring-worker.md.

Connected in ``morale/celery.py``, which imports this before Django is set up: nothing
at module level touches Django models, so the services are imported inside the handlers.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings

from .baseline import BUILTIN_NAMES
from .scoring import ScoringError

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
    from . import selectors, services

    try:
        if settings.MORALE_VLM_PATH:
            use_vlm_path(settings.MORALE_VLM_PATH)
        version = selectors.model_version_current_or_none()
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
    from . import selectors, services

    version = services.model_version_for_vlm_path(path)
    current = selectors.model_version_current_or_none()
    if current is not None and current.pk == version.pk:
        return False
    if current is not None and current.name not in BUILTIN_NAMES:
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

"""Every periodic job, declared in one place.

After each `migrate`, the rows are created in django-celery-beat's tables if missing;
existing rows are left as they are, so edits made in the admin (interval, enabled) stick.
"""

from django.conf import settings

PERIODIC_TASKS = [
    # (name shown in the admin, task, seconds between runs: callable reading settings)
    ("Re-queue scenarios without a current-model score", "modelloop.sweep_unscored",
     lambda: settings.MORALE_SWEEP_INTERVAL_SECONDS),
    ("Expire abandoned assignment pages", "annotation.expire_assignments", lambda: 300),
    ("Re-send queued background jobs (exports, imports) and orphaned exports", "annotation.resume_jobs",
     lambda: 120),
    ("Recompute annotator quality flags (pauses annotators failing canaries)", "annotation.quality_refresh",
     lambda: settings.MORALE_QUALITY_INTERVAL_SECONDS),
    ("Retrain the ranking head on a fresh export (gated promotion)", "training.retrain",
     lambda: settings.MORALE_RETRAIN_INTERVAL_HOURS * 3600),
    ("Fail training runs whose worker went silent; re-send queued runs (morale/jobs.py)", "training.sweep_runs",
     lambda: 60),
]


def ensure_periodic_tasks(**kwargs) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    for name, task, seconds in PERIODIC_TASKS:
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        schedule, _ = IntervalSchedule.objects.get_or_create(every=seconds(), period=IntervalSchedule.SECONDS)
        PeriodicTask.objects.create(name=name, task=task, interval=schedule)

# Appended (issue 13): retrain when enough new judgments arrived (training/trigger.py; the
# threshold is the "Retrain policy" in the admin, default MORALE_RETRAIN_AFTER_JUDGMENTS).
PERIODIC_TASKS.append(
    ("Retrain when enough new judgments arrived (threshold: Training > Retrain policy)",
     "training.retrain_on_judgments", lambda: settings.MORALE_RETRAIN_CHECK_SECONDS)
)

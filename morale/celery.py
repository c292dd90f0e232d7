import os

from celery import Celery
from celery.signals import worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "morale.settings.local")

app = Celery("morale")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _note_queues(sender, **kwargs) -> None:
    from modelloop.worker import on_worker_init

    on_worker_init(sender)


@worker_process_init.connect
def _warm_up_model(**kwargs) -> None:
    """Load the current model version in each pool process at start (see modelloop/worker.py)."""
    from modelloop.worker import on_worker_process_init

    on_worker_process_init()

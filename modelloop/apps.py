from django.apps import AppConfig
from django.db.models.signals import post_migrate

from morale.periodic import ensure_periodic_tasks


class ModelloopConfig(AppConfig):
    name = "modelloop"
    verbose_name = "Model in the loop"

    def ready(self) -> None:
        # Runs once after `migrate` (dispatch_uid: not once per app).
        post_migrate.connect(ensure_periodic_tasks, sender=self, dispatch_uid="morale.ensure_periodic_tasks")

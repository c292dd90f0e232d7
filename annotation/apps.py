from django.apps import AppConfig
from django.db.models.signals import post_migrate

from morale.roles import ensure_researcher_group


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Annotation"

    def ready(self) -> None:
        # After each app's migrations (no sender): the last call sees every app's permissions.
        post_migrate.connect(ensure_researcher_group, dispatch_uid="annotation.ensure_researcher_group")

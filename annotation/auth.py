"""The authentication backend of the site: Django's ModelBackend whose ``get_user`` reads
the annotator profile with the user (one query per request instead of two, issue 16).

Listed in ``AUTHENTICATION_BACKENDS`` (morale/settings/base.py); the password check,
permissions and ``is_active`` rule are Django's own.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend


class UserWithAnnotatorBackend(ModelBackend):
    def get_user(self, user_id):
        try:
            user = get_user_model()._default_manager.select_related("annotator").get(pk=user_id)
        except get_user_model().DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None


PATH = f"{__name__}.{UserWithAnnotatorBackend.__qualname__}"

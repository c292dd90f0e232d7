# TEMPORARY restructure shim: re-exports morale.api.urls; the lead removes it after the merge.
"""Old home of the API's URLs (``morale/urls.py`` includes it); see ``morale/api/urls.py``."""

from morale.api.urls import app_name, router, urlpatterns  # noqa: F401

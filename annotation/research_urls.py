# TEMPORARY restructure shim: re-exports annotation.research.urls; the lead removes it after the merge.
"""Old path of the researchers' routes; they live in ``annotation.research.urls``."""

from annotation.research.urls import urlpatterns  # noqa: F401

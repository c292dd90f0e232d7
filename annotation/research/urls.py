"""Routes of the researchers' pages. Included inside ``annotation/urls.py`` (no app_name
here), so the names live in the ``annotation`` namespace: ``annotation:dashboard``,
``annotation:quality``."""

from django.urls import path

from . import research_views

urlpatterns = [
    path("", research_views.dashboard, name="dashboard"),
    path("quality/", research_views.quality_list, name="quality"),
]

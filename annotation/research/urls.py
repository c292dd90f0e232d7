"""Routes of the researchers' pages. Included inside ``annotation/urls.py`` (no app_name
here), so the names live in the ``annotation`` namespace: ``annotation:dashboard``,
``annotation:quality``."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("quality/", views.quality_list, name="quality"),
    path("probes/", views.probes, name="probes"),
    path("probes/<int:version_id>/", views.probe_version, name="probe_version"),
    path("probes/<int:version_id>/severity.svg", views.probe_severity_svg, name="probe_severity_svg"),
]

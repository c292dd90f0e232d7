"""URLs of the REST API, included by ``morale/urls.py`` under ``api/``:

- ``api/v1/``     the resources (a DefaultRouter; its root lists them)
- ``api/schema/`` the OpenAPI 3 schema (drf-spectacular)
- ``api/docs/``   Swagger UI, ``api/docs/redoc/`` Redoc

URL names are in the namespace ``api`` (``api:judgment-list``, ``api:export-download``, ...).

The docs pages run under the site's Content-Security-Policy with what they need added:
Swagger UI loads its start-up script from its own URL (``?script``, drf-spectacular's
split view) instead of inline; Redoc injects its styles as ``<style>`` elements and runs
its search in a ``blob:`` worker. Neither loads anything from another site.
"""

from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from annotation.api import AssignmentViewSet, ContextViewSet, ExportViewSet, JudgmentViewSet, ScenarioViewSet
from modelloop.api import ModelVersionViewSet, PredictionViewSet
from training.api import TrainingRunViewSet

app_name = "api"

router = DefaultRouter()
router.register("contexts", ContextViewSet, basename="context")
router.register("scenarios", ScenarioViewSet, basename="scenario")
router.register("assignments", AssignmentViewSet, basename="assignment")
router.register("judgments", JudgmentViewSet, basename="judgment")
router.register("predictions", PredictionViewSet, basename="prediction")
router.register("model-versions", ModelVersionViewSet, basename="model-version")
router.register("exports", ExportViewSet, basename="export")
router.register("training-runs", TrainingRunViewSet, basename="training-run")

urlpatterns = [
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api:schema", template_name="api/swagger_ui.html"),
        name="docs",
    ),
    path(
        "docs/redoc/",
        csp_update({"style-src": [UNSAFE_INLINE], "worker-src": ["blob:"]})(
            SpectacularRedocView.as_view(url_name="api:schema", template_name="api/redoc.html")
        ),
        name="redoc",
    ),
]

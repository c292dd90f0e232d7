"""URLs of the REST API, included by ``morale/urls.py`` under ``api/``:

- ``api/v1/``     the resources (a DefaultRouter; its root lists them)
- ``api/schema/`` the OpenAPI 3 schema (drf-spectacular)
- ``api/docs/``   Swagger UI, ``api/docs/redoc/`` Redoc

URL names are in the namespace ``api`` (``api:judgment-list``, ``api:export-download``, ...).
"""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
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
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("docs/redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
]

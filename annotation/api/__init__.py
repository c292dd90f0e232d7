"""The annotation app's REST API: audience rules, serializers, FilterSets, ViewSets (docs/api.md).

Only ``morale/api/urls.py`` (the router) imports it; it reads through ``annotation.selectors``
and writes through the services. Re-exports what the router and old callers name.
"""

from .audience import AudienceSerializer, AudienceViewSetMixin, for_researcher  # noqa: F401
from .views import AssignmentViewSet, ContextViewSet, ExportViewSet, JudgmentViewSet, ScenarioViewSet  # noqa: F401

"""FilterSets of the annotation API: the query parameters each resource accepts, per audience.

Every other parameter is refused with 400 (``morale.api.filters.AllowListedFilterBackend``);
the ``*ResearchFilter`` sets add the researcher-only ones.
"""

from __future__ import annotations

import django_filters

from morale.api.filters import AllowListedOrdering, BooleanFilter, IdFilter, IntegerFilter, TextFilter

from ..models import Assignment, Context, DatasetExport, Judgment, Scenario
from .audience import RESEARCHERS_ONLY_FILTER


def _created_range():
    """``created_after`` / ``created_before``: two plain parameters (no range widget whose
    suffixed names the allow-list would have to know)."""
    return (
        django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte", label="Created at or after (ISO 8601)"),
        django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lte", label="Created at or before (ISO 8601)"),
    )


class ContextFilter(django_filters.FilterSet):
    image_origin = django_filters.ChoiceFilter(choices=Context.ImageOrigin.choices)
    image_unreliable = BooleanFilter()
    created_after, created_before = _created_range()
    ordering = AllowListedOrdering(fields=["id", "created_at"])

    class Meta:
        model = Context
        fields = []


class ContextResearchFilter(ContextFilter):
    is_active = BooleanFilter(label=RESEARCHERS_ONLY_FILTER)
    import_batch = IdFilter(field_name="import_batch_id", label=RESEARCHERS_ONLY_FILTER)
    external_id = TextFilter(label=RESEARCHERS_ONLY_FILTER)
    ordering = AllowListedOrdering(fields=["id", "created_at", "judgment_count"])


class ScenarioFilter(django_filters.FilterSet):
    context = IdFilter(field_name="context_id")
    origin = django_filters.ChoiceFilter(choices=Scenario.Origin.choices)
    created_after, created_before = _created_range()
    ordering = AllowListedOrdering(fields=["id", "created_at"])

    class Meta:
        model = Scenario
        fields = []


class ScenarioResearchFilter(ScenarioFilter):
    author = django_filters.UUIDFilter(
        field_name="author__public_id", label=f"The author's public_id. {RESEARCHERS_ONLY_FILTER}"
    )
    is_canary = BooleanFilter(label=RESEARCHERS_ONLY_FILTER)
    is_retired = BooleanFilter(label=RESEARCHERS_ONLY_FILTER)
    text_only_label = django_filters.TypedChoiceFilter(
        choices=[(-1, "-1"), (0, "0"), (1, "1")], coerce=int, label=RESEARCHERS_ONLY_FILTER
    )
    ordering = AllowListedOrdering(fields=["id", "created_at", "judgment_count"])


class AssignmentFilter(django_filters.FilterSet):
    annotator = django_filters.UUIDFilter(field_name="annotator__public_id", label="The annotator's public_id.")
    context = IdFilter(field_name="context_id")
    status = django_filters.ChoiceFilter(choices=Assignment.Status.choices)
    created_after, created_before = _created_range()
    ordering = AllowListedOrdering(fields=["id", "created_at", "expires_at"])

    class Meta:
        model = Assignment
        fields = []


class JudgmentFilter(django_filters.FilterSet):
    annotator = django_filters.UUIDFilter(field_name="annotator__public_id", label="The annotator's public_id.")
    scenario = IdFilter(field_name="scenario_id")
    context = IdFilter(field_name="scenario__context_id")
    assignment = IdFilter(field_name="assignment_id")
    phase = django_filters.ChoiceFilter(choices=Judgment.Phase.choices)
    modality = django_filters.ChoiceFilter(choices=Judgment.Modality.choices)
    score = IntegerFilter(min_value=1, max_value=5, label="Score 1-5.")
    created_after, created_before = _created_range()
    ordering = AllowListedOrdering(fields=["id", "created_at", "score"])

    class Meta:
        model = Judgment
        fields = []


class JudgmentResearchFilter(JudgmentFilter):
    model_version = IdFilter(field_name="model_version_id", label=RESEARCHERS_ONLY_FILTER)
    canary_passed = BooleanFilter(label=RESEARCHERS_ONLY_FILTER)
    ordering = AllowListedOrdering(fields=["id", "created_at", "score", "delta", "seconds_spent"])


class ExportFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=DatasetExport.Status.choices)
    # not "format": DRF reads ?format= as the response format (json, api)
    file_format = django_filters.ChoiceFilter(field_name="format", choices=DatasetExport.Format.choices)
    created_after, created_before = _created_range()
    ordering = AllowListedOrdering(fields=["id", "created_at"])

    class Meta:
        model = DatasetExport
        fields = []

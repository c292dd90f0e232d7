"""REST API of the model loop: model versions and their predictions, researchers only.

Both are produced by services (registration, promotion, scoring tasks), so the API only
reads them. Weight files are never served: a version says whether it has head weights or
a LoRA adapter, not where they are.
"""

from __future__ import annotations

import django_filters
from django.db.models import F
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.permissions import IsAuthenticated

from morale.api.filters import AllowListedOrdering, BooleanFilter, IdFilter, TextFilter
from morale.api.permissions import IsResearcher

from .models import ModelVersion, Prediction


class ModelVersionSerializer(serializers.ModelSerializer):
    has_head_weights = serializers.SerializerMethodField()
    has_lora_adapter = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id", "name", "scorer", "description", "config", "backbone_ref", "calibration", "metrics",
            "is_current", "created_at", "promoted_at", "load_error", "load_checked_at",
            "has_head_weights", "has_lora_adapter",
        ]
        read_only_fields = fields

    def get_has_head_weights(self, version) -> bool:
        return bool(version.head_weights)

    def get_has_lora_adapter(self, version) -> bool:
        return bool(version.lora_adapter)


class PredictionSerializer(serializers.ModelSerializer):
    context = serializers.IntegerField(source="context_id", read_only=True, help_text="The scenario's context.")

    class Meta:
        model = Prediction
        fields = ["id", "model_version", "scenario", "context", "status", "score", "error", "created_at"]
        read_only_fields = fields


class ModelVersionFilter(django_filters.FilterSet):
    is_current = BooleanFilter()
    scorer = TextFilter()
    name = TextFilter()
    ordering = AllowListedOrdering(fields=["id", "created_at", "promoted_at", "name"])

    class Meta:
        model = ModelVersion
        fields = []


class PredictionFilter(django_filters.FilterSet):
    model_version = IdFilter(field_name="model_version_id")
    current = BooleanFilter(field_name="model_version__is_current", label="Of the current version only.")
    scenario = IdFilter(field_name="scenario_id")
    context = IdFilter(field_name="scenario__context_id")
    status = django_filters.ChoiceFilter(choices=Prediction.Status.choices)
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lte")
    ordering = AllowListedOrdering(fields=["id", "created_at", "score"])

    class Meta:
        model = Prediction
        fields = []


@extend_schema_view(
    list=extend_schema(summary="Model versions (researchers only)"),
    retrieve=extend_schema(summary="One model version: scorer, config, calibration, metrics"),
)
class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [IsAuthenticated, IsResearcher]
    queryset = ModelVersion.objects.all()
    serializer_class = ModelVersionSerializer
    filterset_class = ModelVersionFilter


@extend_schema_view(
    list=extend_schema(summary="Predictions: each version's score per scenario (researchers only)"),
    retrieve=extend_schema(summary="One prediction"),
)
class PredictionViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [IsAuthenticated, IsResearcher]
    queryset = Prediction.objects.annotate(context_id=F("scenario__context_id"))
    serializer_class = PredictionSerializer
    filterset_class = PredictionFilter

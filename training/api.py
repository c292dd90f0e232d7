"""REST API of the training app: training runs, researchers only.

Runs are read here and started through ``training.services`` (the same queue-then-send
steps as the admin's "Start a training run" button): POST answers 202 with the queued
run, 409 while another run is queued or running (runs never overlap).
"""

from __future__ import annotations

from dataclasses import fields as dataclass_fields

import django_filters
from django.db import transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import APIException
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.reverse import reverse

from annotation.models import DatasetExport
from morale.api.filters import AllowListedOrdering, IdFilter
from morale.api.permissions import IsResearcher

from . import services, tasks
from .models import TrainingRun
from .train import TrainConfig


class TrainingRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingRun
        fields = [
            "id", "status", "triggered_by", "config", "export", "progress", "metrics", "error", "model_version",
            "promoted", "gate_reason", "created_at", "started_at", "finished_at", "heartbeat_at",
        ]
        read_only_fields = fields


class TrainingRunDetailSerializer(TrainingRunSerializer):
    class Meta(TrainingRunSerializer.Meta):
        fields = [*TrainingRunSerializer.Meta.fields, "log"]
        read_only_fields = fields


class TrainingRunCreateSerializer(serializers.Serializer):
    export = serializers.PrimaryKeyRelatedField(
        queryset=DatasetExport.objects.filter(
            status=DatasetExport.Status.DONE, format__in=[DatasetExport.Format.JSONL, DatasetExport.Format.PARQUET]
        ),
        required=False,
        allow_null=True,
        help_text="A finished JSONL or Parquet export to train on; left out, the run writes a fresh JSONL export.",
    )
    config = serializers.DictField(
        required=False,
        help_text="Training settings to change from their defaults; keys: "
        + ", ".join(f.name for f in dataclass_fields(TrainConfig))
        + " (training.train.TrainConfig).",
    )

    def validate_config(self, value: dict) -> dict:
        kinds = {f.name: type(f.default) for f in dataclass_fields(TrainConfig)}
        for key, setting in value.items():
            kind = kinds.get(key)
            if kind is None:
                raise serializers.ValidationError(f"unknown setting {key!r}; known: {', '.join(kinds)}")
            number = isinstance(setting, (int, float)) and not isinstance(setting, bool)
            if not (type(setting) is kind or (kind is float and number)):
                raise serializers.ValidationError(f"{key} must be of type {kind.__name__}, not {setting!r}")
        try:
            TrainConfig(**value)
        except (TypeError, ValueError) as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return value


class TrainingRunFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=TrainingRun.Status.choices)
    triggered_by = django_filters.ChoiceFilter(choices=TrainingRun.Trigger.choices)
    promoted = django_filters.BooleanFilter()
    export = IdFilter(field_name="export_id")
    model_version = IdFilter(field_name="model_version_id")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lte")
    ordering = AllowListedOrdering(fields=["id", "created_at", "finished_at"])

    class Meta:
        model = TrainingRun
        fields = []


class TrainingRunInProgressError(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "Another training run is queued or running; runs never overlap."
    default_code = "training_run_in_progress"


@extend_schema_view(
    list=extend_schema(summary="Training runs (researchers only)"),
    retrieve=extend_schema(summary="One training run, with its log"),
)
class TrainingRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [IsAuthenticated, IsResearcher]
    queryset = TrainingRun.objects.all()
    filterset_class = TrainingRunFilter

    def get_queryset(self):
        qs = super().get_queryset()
        return qs if self.action == "retrieve" else qs.defer("log")  # the log is up to 100 kB a run

    def get_serializer_class(self):
        return {"create": TrainingRunCreateSerializer, "retrieve": TrainingRunDetailSerializer}.get(
            self.action, TrainingRunSerializer
        )

    @extend_schema(
        summary="Start a training run (researchers only)",
        request=TrainingRunCreateSerializer,
        responses={
            202: OpenApiResponse(TrainingRunSerializer, description="Queued; a worker on queue gpu trains it."),
            409: OpenApiResponse(description="Another run is queued or running."),
        },
    )
    def create(self, request):
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                # The model's trigger choices have no "api" yet (a migration); the API is the
                # admin's button by other means.
                run = services.training_run_queue(
                    config=data.validated_data.get("config") or {},
                    export=data.validated_data.get("export"),
                    triggered_by=TrainingRun.Trigger.ADMIN,
                )
                transaction.on_commit(lambda: services.training_run_send(run_id=run.pk, task=tasks.execute_run))
        except services.TrainingRunInProgress as exc:
            raise TrainingRunInProgressError(str(exc)) from exc
        except ValueError as exc:
            raise serializers.ValidationError({"config": [str(exc)]}) from exc
        body = TrainingRunSerializer(run, context=self.get_serializer_context()).data
        response = Response(body, status=status.HTTP_202_ACCEPTED)
        response["Location"] = reverse("api:training-run-detail", kwargs={"pk": run.pk}, request=request)
        return response

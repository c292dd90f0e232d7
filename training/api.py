"""REST API of the training app: training runs, researchers only.

Runs are read here and started through ``training.services`` (the same queue-then-send
steps as the admin's "Start a training run" button): POST answers 202 with the queued
run, 409 while another run is queued or running (runs never overlap).
"""

from __future__ import annotations

import django_filters
from django.db import transaction
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import APIException
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.reverse import reverse

from annotation.models import DatasetExport
from morale.api.fields import JsonBooleanField, JsonChoiceField, JsonIntegerField, JsonNumberField, JsonTextField
from morale.api.filters import BIGINT_MAX, AllowListedOrdering, BooleanFilter, IdFilter
from morale.api.permissions import IsResearcher
from morale.api.schema import ERROR

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


class TrainConfigSerializer(serializers.Serializer):
    """The fields of ``training.train.TrainConfig`` a run may change, each with the JSON type
    and range the schema states; a key it does not name is refused. ``TrainConfig`` itself
    checks the result once more (``validate``)."""

    loss = JsonChoiceField(choices=["listmle", "bpo", "bce"], required=False, help_text="The paper's ListMLE, or a baseline.")
    epochs = JsonIntegerField(min_value=1, max_value=10_000, required=False)
    lr = JsonNumberField(min_value=1e-12, max_value=10.0, required=False, help_text="AdamW learning rate (> 0).")
    weight_decay = JsonNumberField(min_value=0.0, max_value=10.0, required=False)
    lists_per_step = JsonIntegerField(min_value=1, max_value=100_000, required=False)
    hidden = JsonIntegerField(min_value=1, max_value=65_536, required=False, help_text="Width of the score head.")
    dropout = JsonNumberField(min_value=0.0, max_value=0.99, required=False)
    mse_weight = JsonNumberField(min_value=0.0, max_value=1000.0, required=False)
    modality_weight = JsonNumberField(min_value=0.0, max_value=1000.0, required=False)
    seed = JsonIntegerField(min_value=0, max_value=2**32 - 1, required=False)
    ndcg_k = JsonIntegerField(min_value=1, max_value=1000, required=False)
    mode = JsonChoiceField(
        choices=["head", "lora"], required=False,
        help_text="head: the head on cached frozen-backbone features; lora: LoRA on a VLM plus the head (needs vlm_path).",
    )
    vlm_path = JsonTextField(
        required=False, allow_blank=True, max_length=1000,
        help_text="Mode lora only (required there): a local Hugging Face VLM checkpoint directory on the GPU workers.",
    )
    max_image_side = JsonIntegerField(min_value=1, max_value=8192, required=False)
    gradient_checkpointing = JsonBooleanField(required=False)
    lora_dropout = JsonNumberField(min_value=0.0, max_value=0.99, required=False)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {key[:100]: [f"Unknown setting; known: {', '.join(self.fields)}."] for key in unknown[:10]}
                )
        return super().to_internal_value(data)

    def validate(self, attrs: dict) -> dict:
        try:
            TrainConfig(**attrs)  # the cross-field rules (lora needs vlm_path, head takes none)
        except (TypeError, ValueError) as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return attrs


class TrainConfigSchema(OpenApiSerializerExtension):
    """The schema of a config says what ``TrainConfig`` checks across fields: in mode
    ``head`` (the default) ``vlm_path`` is empty or left out; mode ``lora`` needs one."""

    target_class = TrainConfigSerializer

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["additionalProperties"] = False
        schema["oneOf"] = [
            # patterns, not enums: drf-spectacular would hoist an enum into the mode's component
            {"properties": {"mode": {"pattern": "^head$"}, "vlm_path": {"maxLength": 0}}},
            {"required": ["mode", "vlm_path"], "properties": {"mode": {"pattern": "^lora$"}, "vlm_path": {"minLength": 1}}},
        ]
        return schema


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": BIGINT_MAX, "nullable": True})
class ExportIdField(serializers.PrimaryKeyRelatedField):
    """A finished JSONL or Parquet export's id, as a JSON integer (not ``"5"``)."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int) or not 1 <= data <= BIGINT_MAX:
            raise serializers.ValidationError(f"Must be an export id (a whole number from 1 to {BIGINT_MAX}).")
        return super().to_internal_value(data)


class TrainingRunCreateSerializer(serializers.Serializer):
    export = ExportIdField(
        queryset=DatasetExport.objects.filter(
            status=DatasetExport.Status.DONE, format__in=[DatasetExport.Format.JSONL, DatasetExport.Format.PARQUET]
        ),
        required=False,
        allow_null=True,
        help_text="A finished JSONL or Parquet export to train on; left out, the run writes a fresh JSONL export.",
    )
    config = TrainConfigSerializer(
        required=False,
        help_text="Training settings to change from their defaults (training.train.TrainConfig).",
    )


class TrainingRunFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=TrainingRun.Status.choices)
    triggered_by = django_filters.ChoiceFilter(choices=TrainingRun.Trigger.choices)
    promoted = BooleanFilter()
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
            409: OpenApiResponse(ERROR, description="Another run is queued or running."),
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

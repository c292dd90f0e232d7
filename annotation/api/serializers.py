"""Serializers of the annotation API: what a context, scenario, assignment, judgment or export looks like.

Read-only representations (writes go through ``annotation.services`` and the export
service); researcher-only fields are listed in each ``Meta.researcher_fields``.
"""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.reverse import reverse

from annotation.dataset import format as dataset_format
from morale.api.fields import JsonBooleanField, JsonChoiceField, JsonIntegerField, JsonNumberField

from ..models import Assignment, Context, DatasetExport, Judgment, Scenario
from .audience import AudienceSerializer

PUBLIC_ID = "The annotator's public_id (pseudonymous; the id dataset exports use)."
MAX_EXPORT_CONTEXT_IDS = 100_000  # an export of chosen contexts; more than MM-SCALE's 9,260


class ContextSerializer(AudienceSerializer):
    """A context: one image and its setting text."""

    class Meta:
        model = Context
        researcher_fields = ["source", "image_sha256", "is_active", "external_id", "import_batch", "judgment_count"]
        fields = ["id", "image", "setting", "image_origin", "image_unreliable", "created_at", *researcher_fields]
        read_only_fields = fields


class ScenarioSerializer(AudienceSerializer):
    """One action in a context, rated 1-5 by several annotators."""

    author = serializers.UUIDField(
        source="author_public_id", read_only=True, allow_null=True, help_text="public_id of the annotator who wrote it."
    )

    class Meta:
        model = Scenario
        researcher_fields = [
            "author", "prompted_by", "text_only_label", "is_canary", "canary_min_score", "canary_max_score",
            "is_retired", "judgment_count",
        ]
        fields = ["id", "context", "text", "origin", "created_at", *researcher_fields]
        read_only_fields = fields


class AssignmentSerializer(serializers.ModelSerializer):
    """One page of work: a context and the scenarios the annotator was to rate on it."""

    annotator = serializers.UUIDField(source="annotator_public_id", read_only=True, help_text=PUBLIC_ID)
    scenarios = serializers.SerializerMethodField(help_text="Scenario ids in the order the page showed them.")

    class Meta:
        model = Assignment
        fields = [
            "id", "annotator", "context", "status", "scenarios",
            "created_at", "expires_at", "submitted_at", "completed_at",
        ]
        read_only_fields = fields

    def get_scenarios(self, assignment) -> list[int]:
        return [item.scenario_id for item in assignment.items.all()]  # prefetched in position order


class JudgmentSerializer(AudienceSerializer):
    """One annotator's score (1-5) and grounding modality for one scenario. Append-only: a
    grounding check adds a ``reconfirmed`` judgment that ``revises`` the initial one."""

    annotator = serializers.UUIDField(source="annotator_public_id", read_only=True, help_text=PUBLIC_ID)
    context = serializers.IntegerField(source="context_id", read_only=True, help_text="The scenario's context.")

    class Meta:
        model = Judgment
        researcher_fields = ["model_version", "model_score", "delta", "canary_passed"]
        fields = [
            "id", "annotator", "scenario", "context", "assignment", "score", "modality", "phase", "revises",
            "seconds_spent", "created_at", *researcher_fields,
        ]
        read_only_fields = fields


class ExportSerializer(serializers.ModelSerializer):
    """A dataset export (format ``morale-export/1``): status, progress, counts, options and hash."""

    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True)
    download_url = serializers.SerializerMethodField(help_text="Where the file downloads once the export is done.")

    class Meta:
        model = DatasetExport
        fields = [
            "id", "format", "format_version", "status", "progress_done", "progress_total", "sha256", "size_bytes",
            "counts", "options", "error", "created_by", "created_at", "finished_at", "download_url",
        ]
        read_only_fields = fields

    def get_download_url(self, export) -> str | None:
        if export.status != DatasetExport.Status.DONE:
            return None
        return reverse("api:export-download", kwargs={"pk": export.pk}, request=self.context.get("request"))


class ExportCreateSerializer(serializers.Serializer):
    """What a researcher may choose for an export; left out, the ``MORALE_EXPORT_*`` settings apply.
    The split seed, test fraction and chunk size are deployment settings, not per-export choices.
    Each value must have the JSON type the schema names (``"true"`` is not ``true``)."""

    format = JsonChoiceField(choices=DatasetExport.Format.choices)
    source = JsonChoiceField(choices=[(s, s) for s in dataset_format.SOURCES], required=False)
    max_sd = JsonNumberField(
        required=False,
        allow_null=True,
        min_value=0,
        help_text="Drop scenarios whose sd is above this; null: no sd filter.",
    )
    include_screened = JsonBooleanField(required=False)
    include_canaries = JsonBooleanField(required=False)
    include_imported = JsonBooleanField(
        required=False, help_text="Keep imported ratings and pre-aggregated scores (default: MORALE_EXPORT_INCLUDE_IMPORTED)."
    )
    context_ids = serializers.ListField(
        child=JsonIntegerField(min_value=1),
        required=False,
        allow_empty=False,
        min_length=1,
        max_length=MAX_EXPORT_CONTEXT_IDS,
        help_text=f"Export only these contexts (1 to {MAX_EXPORT_CONTEXT_IDS:,} ids); left out: all.",
    )

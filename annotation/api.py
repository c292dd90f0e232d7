"""REST API of the annotation app: contexts, scenarios, assignments, judgments, exports.

Who sees what (queryset filtering, so someone else's id is a 404, never a 403):

- **Researchers** (``annotation.roles``: staff in the group ``researcher``, and
  superusers) read every row with every field, and only they list, create and download
  dataset exports.
- **Everyone else** (annotators) reads their own assignments and judgments, and the
  contexts and scenarios of their own assignments (plus scenarios they wrote) - never
  another annotator's rows, and never the fields that would help them game quality control
  or that belong to the model: canary flags and ranges, ``canary_passed``, text-only
  labels, the model's score and version, authorship, counts.

Annotators appear as their pseudonymous ``public_id`` (the id dataset exports use), to
researchers too: usernames never leave the server through the API (the admin maps one to
the other when a researcher must act on a person).

Views only parse input and call a service: an export is queued with
``annotation.exports.dataset_export_queue`` (a worker writes it; the record shows progress).
"""

from __future__ import annotations

import base64
import logging
import os

import django_filters
from django.db.models import Exists, F, OuterRef, Prefetch, Q
from django.http import FileResponse
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.reverse import reverse

from morale.permissions import AllowListedOrdering, IdFilter, IsResearcher, is_researcher

from . import exports
from .models import Assignment, AssignmentItem, Context, DatasetExport, Judgment, Scenario

logger = logging.getLogger(__name__)

RESEARCHERS_ONLY = "Researchers only: absent from annotators' responses."
RESEARCHERS_ONLY_FILTER = "Researchers only (for anyone else an unknown parameter: 400)."
PUBLIC_ID = "The annotator's public_id (pseudonymous; the id dataset exports use)."


# --- audience: researcher or not ---------------------------------------------------------------
def for_researcher(*, request, view) -> bool:
    """Whether this request gets the researcher's view. Schema generation (a fake view
    without a real user) documents the researcher's view, with the extra parts marked."""
    if getattr(view, "swagger_fake_view", False):
        return True
    return request is not None and is_researcher(request.user)


class AudienceSerializer(serializers.ModelSerializer):
    """A serializer whose ``Meta.researcher_fields`` are sent to researchers only.

    For anyone else the fields are removed before serializing (not blanked): their values
    are never read, and a response cannot leak them by mistake.
    """

    def get_fields(self):
        fields = super().get_fields()
        if not for_researcher(request=self.context.get("request"), view=self.context.get("view")):
            for name in self.Meta.researcher_fields:
                fields.pop(name)
        return fields


class AudienceSerializerSchema(OpenApiSerializerExtension):
    """In the schema, researcher-only fields are optional and say so."""

    target_class = AudienceSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        hidden = set(self.target.Meta.researcher_fields)
        required = [name for name in schema.get("required", []) if name not in hidden]
        if required:
            schema["required"] = required
        else:
            schema.pop("required", None)
        for name in hidden:
            prop = schema["properties"][name]
            if "$ref" in prop:
                schema["properties"][name] = {"allOf": [prop], "description": RESEARCHERS_ONLY}
            else:
                prop["description"] = f"{prop.get('description', '')} {RESEARCHERS_ONLY}".strip()
        return schema


class AudienceViewSetMixin:
    """Picks the FilterSet by audience: ``research_filterset_class`` for researchers,
    ``filterset_class`` for everyone else (so filters on hidden fields are refused too)."""

    filterset_class = None
    research_filterset_class = None

    @property
    def researcher_view(self) -> bool:
        return for_researcher(request=self.request, view=self)

    def get_filterset_class(self):
        return self.research_filterset_class if self.researcher_view else self.filterset_class


# --- serializers -----------------------------------------------------------------------------------
class ContextSerializer(AudienceSerializer):
    """A context: one image and its setting text."""

    class Meta:
        model = Context
        fields = [
            "id", "image", "setting", "image_origin", "image_unreliable", "created_at",
            "source", "image_sha256", "is_active", "external_id", "import_batch", "judgment_count",
        ]
        researcher_fields = ["source", "image_sha256", "is_active", "external_id", "import_batch", "judgment_count"]
        read_only_fields = fields


class ScenarioSerializer(AudienceSerializer):
    """One action in a context, rated 1-5 by several annotators."""

    author = serializers.UUIDField(
        source="author_public_id", read_only=True, allow_null=True, help_text="public_id of the annotator who wrote it."
    )

    class Meta:
        model = Scenario
        fields = [
            "id", "context", "text", "origin", "created_at",
            "author", "prompted_by", "text_only_label", "is_canary", "canary_min_score", "canary_max_score",
            "is_retired", "judgment_count",
        ]
        researcher_fields = [
            "author", "prompted_by", "text_only_label", "is_canary", "canary_min_score", "canary_max_score",
            "is_retired", "judgment_count",
        ]
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
        fields = [
            "id", "annotator", "scenario", "context", "assignment", "score", "modality", "phase", "revises",
            "seconds_spent", "created_at",
            "model_version", "model_score", "delta", "canary_passed",
        ]
        researcher_fields = ["model_version", "model_score", "delta", "canary_passed"]
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
    The split seed, test fraction and chunk size are deployment settings, not per-export choices."""

    format = serializers.ChoiceField(choices=DatasetExport.Format.choices)
    source = serializers.ChoiceField(choices=[(s, s) for s in exports.SOURCES], required=False)
    max_sd = serializers.FloatField(
        required=False,
        allow_null=True,
        min_value=0,
        help_text="Drop scenarios whose sd is above this; null: no sd filter.",
    )
    include_screened = serializers.BooleanField(required=False)
    include_canaries = serializers.BooleanField(required=False)
    context_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        allow_empty=False,
        max_length=100_000,
        help_text="Export only these contexts; left out: all.",
    )


# --- filters -----------------------------------------------------------------------------------------
def _created_range():
    """``created_after`` / ``created_before``: two plain parameters (no range widget whose
    suffixed names the allow-list would have to know)."""
    return (
        django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte", label="Created at or after (ISO 8601)"),
        django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lte", label="Created at or before (ISO 8601)"),
    )


class ContextFilter(django_filters.FilterSet):
    image_origin = django_filters.ChoiceFilter(choices=Context.ImageOrigin.choices)
    image_unreliable = django_filters.BooleanFilter()
    created_after, created_before = _created_range()
    ordering = AllowListedOrdering(fields=["id", "created_at"])

    class Meta:
        model = Context
        fields = []


class ContextResearchFilter(ContextFilter):
    is_active = django_filters.BooleanFilter(label=RESEARCHERS_ONLY_FILTER)
    import_batch = IdFilter(field_name="import_batch_id", label=RESEARCHERS_ONLY_FILTER)
    external_id = django_filters.CharFilter(label=RESEARCHERS_ONLY_FILTER)
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
    is_canary = django_filters.BooleanFilter(label=RESEARCHERS_ONLY_FILTER)
    is_retired = django_filters.BooleanFilter(label=RESEARCHERS_ONLY_FILTER)
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
    score = IdFilter(label="Score 1-5.")
    created_after, created_before = _created_range()
    ordering = AllowListedOrdering(fields=["id", "created_at", "score"])

    class Meta:
        model = Judgment
        fields = []


class JudgmentResearchFilter(JudgmentFilter):
    model_version = IdFilter(field_name="model_version_id", label=RESEARCHERS_ONLY_FILTER)
    canary_passed = django_filters.BooleanFilter(label=RESEARCHERS_ONLY_FILTER)
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


# --- what each user may read -----------------------------------------------------------------
def contexts_visible(*, user, researcher: bool):
    """Researchers: all; others: the contexts of their own assignments."""
    qs = Context.objects.all()
    if researcher:
        return qs
    return qs.filter(Exists(Assignment.objects.filter(context=OuterRef("pk"), annotator__user_id=user.pk)))


def scenarios_visible(*, user, researcher: bool):
    """Researchers: all; others: the scenarios of their own assignments and those they wrote."""
    qs = Scenario.objects.annotate(author_public_id=F("author__public_id"))
    if researcher:
        return qs
    on_own_page = AssignmentItem.objects.filter(scenario=OuterRef("pk"), assignment__annotator__user_id=user.pk)
    return qs.filter(Q(Exists(on_own_page)) | Q(author__user_id=user.pk))


def assignments_visible(*, user, researcher: bool):
    qs = Assignment.objects.annotate(annotator_public_id=F("annotator__public_id")).prefetch_related(
        Prefetch("items", queryset=AssignmentItem.objects.order_by("position").only("assignment_id", "scenario_id"))
    )
    return qs if researcher else qs.filter(annotator__user_id=user.pk)


def judgments_visible(*, user, researcher: bool):
    qs = Judgment.objects.annotate(context_id=F("scenario__context_id"), annotator_public_id=F("annotator__public_id"))
    return qs if researcher else qs.filter(annotator__user_id=user.pk)


class _OwnOrAllViewSet(AudienceViewSetMixin, viewsets.ReadOnlyModelViewSet):
    # Read-only; researchers read all rows, everyone else those ``visible`` gives them.
    # (A comment, not a docstring: the subclasses' docstrings are the API documentation.)

    permission_classes = [IsAuthenticated]
    visible = None  # staticmethod(user=, researcher=) -> queryset

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return self.queryset_model.objects.none()
        return type(self).visible(user=self.request.user, researcher=self.researcher_view)


# --- viewsets -----------------------------------------------------------------------------------
@extend_schema_view(
    list=extend_schema(summary="Contexts (annotators: those of their own assignments)"),
    retrieve=extend_schema(summary="One context"),
)
class ContextViewSet(_OwnOrAllViewSet):
    """Contexts (image + setting). Researchers read all; an annotator reads the contexts of
    their own assignments, without the researcher-only fields; any other id is a 404."""

    queryset_model = Context
    visible = staticmethod(contexts_visible)
    serializer_class = ContextSerializer
    filterset_class = ContextFilter
    research_filterset_class = ContextResearchFilter


@extend_schema_view(
    list=extend_schema(summary="Scenarios (annotators: those of their own assignments and those they wrote)"),
    retrieve=extend_schema(summary="One scenario"),
)
class ScenarioViewSet(_OwnOrAllViewSet):
    """Scenarios. Researchers read all, with canary and label fields; an annotator reads the
    scenarios of their own assignments and those they wrote; any other id is a 404."""

    queryset_model = Scenario
    visible = staticmethod(scenarios_visible)
    serializer_class = ScenarioSerializer
    filterset_class = ScenarioFilter
    research_filterset_class = ScenarioResearchFilter


@extend_schema_view(
    list=extend_schema(summary="Assignments (annotators: their own)"),
    retrieve=extend_schema(summary="One assignment"),
)
class AssignmentViewSet(_OwnOrAllViewSet):
    """Assignments (pages of work). Researchers read all; an annotator reads their own; any
    other id is a 404."""

    queryset_model = Assignment
    visible = staticmethod(assignments_visible)
    serializer_class = AssignmentSerializer
    filterset_class = AssignmentFilter
    research_filterset_class = AssignmentFilter


@extend_schema_view(
    list=extend_schema(summary="Judgments (annotators: their own); append-only, so read-only here"),
    retrieve=extend_schema(summary="One judgment"),
)
class JudgmentViewSet(_OwnOrAllViewSet):
    """Judgments, read-only (they are append-only and written by the annotation pages).
    Researchers read all, with the model's score and the canary outcome; an annotator reads
    their own; any other id is a 404."""

    queryset_model = Judgment
    visible = staticmethod(judgments_visible)
    serializer_class = JudgmentSerializer
    filterset_class = JudgmentFilter
    research_filterset_class = JudgmentResearchFilter


# --- exports ----------------------------------------------------------------------------------------
class ExportNotReady(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "This export has no file to download (it is queued, running or failed)."
    default_code = "export_not_ready"


CONTENT_TYPES = {
    "jsonl": "application/jsonl",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}


@extend_schema_view(
    list=extend_schema(summary="Dataset exports (researchers only)"),
    retrieve=extend_schema(summary="One export: status, progress, counts, options"),
)
class ExportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Dataset exports, researchers only. Files download through ``download/`` (never
    through public media: ``MEDIA_ROOT/exports`` is not served)."""

    permission_classes = [IsAuthenticated, IsResearcher]
    queryset = DatasetExport.objects.select_related("created_by")
    serializer_class = ExportSerializer
    filterset_class = ExportFilter

    def get_serializer_class(self):
        return ExportCreateSerializer if self.action == "create" else ExportSerializer

    @extend_schema(
        summary="Start an export (researchers only)",
        request=ExportCreateSerializer,
        responses={
            202: OpenApiResponse(
                ExportSerializer, description="Queued for a worker: poll the export until its status is done or failed."
            ),
        },
    )
    def create(self, request):
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        options = dict(data.validated_data)
        fmt = options.pop("format")
        try:
            export = exports.dataset_export_queue(fmt=fmt, created_by=request.user, **options)
        except (TypeError, ValueError) as exc:
            raise serializers.ValidationError({"detail": str(exc)}) from exc
        body = ExportSerializer(export, context=self.get_serializer_context()).data
        response = Response(body, status=status.HTTP_202_ACCEPTED)
        response["Location"] = reverse("api:export-detail", kwargs={"pk": export.pk}, request=request)
        return response

    def perform_content_negotiation(self, request, force=False):
        # The download answers with the file whatever the Accept header asks for.
        return super().perform_content_negotiation(request, force=force or self.action == "download")

    @extend_schema(
        summary="Download an export's file (researchers only)",
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="The export file."),
            409: OpenApiResponse(description="Not done yet, or failed: nothing to download."),
        },
    )
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        export = self.get_object()
        if export.status != DatasetExport.Status.DONE or not export.file:
            raise ExportNotReady()
        try:
            handle = export.file.open("rb")
        except FileNotFoundError:
            logger.error("export #%s is done but its file %s is missing", export.pk, export.file.name)
            raise NotFound("This export's file is missing from storage.") from None
        response = FileResponse(
            handle,
            as_attachment=True,
            filename=os.path.basename(export.file.name),
            content_type=CONTENT_TYPES[export.format],
        )
        # RFC 9530: the client can check what it received against the recorded hash.
        response["Repr-Digest"] = f"sha-256=:{base64.b64encode(bytes.fromhex(export.sha256)).decode()}:"
        response["Cache-Control"] = "private, no-store"
        return response

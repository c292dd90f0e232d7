"""ViewSets of the annotation API: contexts, scenarios, assignments, judgments, exports.

Thin: each reads through a selector (``annotation.selectors.*_visible``: someone else's id
is a 404, never a 403) or queues an export through the export service. Who sees what:
docs/api.md.
"""

from __future__ import annotations

import base64
import logging
import os

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.reverse import reverse

from morale.api.permissions import IsResearcher
from morale.api.schema import ERROR

from .. import selectors
from annotation.dataset.export import service as export_service
from ..models import Assignment, Context, DatasetExport, Judgment, Scenario
from .audience import AudienceViewSetMixin
from .filters import (
    AssignmentFilter,
    ContextFilter,
    ContextResearchFilter,
    ExportFilter,
    JudgmentFilter,
    JudgmentResearchFilter,
    ScenarioFilter,
    ScenarioResearchFilter,
)
from .serializers import (
    AssignmentSerializer,
    ContextSerializer,
    ExportCreateSerializer,
    ExportSerializer,
    JudgmentSerializer,
    ScenarioSerializer,
)

logger = logging.getLogger(__name__)


class _OwnOrAllViewSet(AudienceViewSetMixin, viewsets.ReadOnlyModelViewSet):
    # Read-only; researchers read all rows, everyone else those ``visible`` gives them.
    # (A comment, not a docstring: the subclasses' docstrings are the API documentation.)

    permission_classes = [IsAuthenticated]
    visible = None  # staticmethod(user=, researcher=) -> queryset: a selector

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
    visible = staticmethod(selectors.contexts_visible)
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
    visible = staticmethod(selectors.scenarios_visible)
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
    visible = staticmethod(selectors.assignments_visible)
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
    visible = staticmethod(selectors.judgments_visible)
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
            export = export_service.dataset_export_queue(fmt=fmt, created_by=request.user, **options)
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
            **{
                (200, content_type.split(";")[0]): OpenApiResponse(OpenApiTypes.BINARY, description=f"The export file ({fmt}).")
                for fmt, content_type in CONTENT_TYPES.items()
            },
            409: OpenApiResponse(ERROR, description="Not done yet, or failed: nothing to download."),
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

"""Admin for researchers: browse contexts, scenarios, annotators, assignments, judgments.

Judgments are append-only, so the admin shows them read-only.
"""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django import forms

from . import services
from .images import check_image_upload
from .models import Annotator, Assignment, AssignmentItem, Context, Judgment, Scenario


class ContextAdminForm(forms.ModelForm):
    class Meta:
        model = Context
        fields = ["image", "setting", "source", "image_origin", "image_unreliable", "is_active"]

    def clean_image(self):
        image = self.cleaned_data["image"]
        if image and hasattr(image, "read"):
            self._checked = check_image_upload(image)  # clear message for non-images, bombs, truncation
        return image

    def save(self, commit=True):
        context = super().save(commit=False)
        checked = getattr(self, "_checked", None)
        if checked is not None:
            context.image_sha256 = checked.sha256
        if commit:
            context.save()
        return context


class ScenarioInline(admin.TabularInline):
    model = Scenario
    fk_name = "context"
    fields = ["text", "origin", "text_only_label", "is_canary", "canary_min_score", "canary_max_score", "is_retired", "judgment_count"]
    readonly_fields = ["origin", "judgment_count"]
    extra = 0
    show_change_link = True


@admin.register(Context)
class ContextAdmin(admin.ModelAdmin):
    form = ContextAdminForm
    list_display = ["id", "setting", "image_origin", "image_unreliable", "is_active", "judgment_count", "created_at"]
    list_filter = ["image_origin", "image_unreliable", "is_active"]
    search_fields = ["setting", "source"]
    readonly_fields = ["image_sha256", "judgment_count"]
    inlines = [ScenarioInline]


@admin.register(Scenario)
class ScenarioAdmin(admin.ModelAdmin):
    list_display = ["id", "text", "context", "origin", "text_only_label", "is_canary", "is_retired", "judgment_count"]
    list_filter = ["origin", "is_canary", "is_retired", "text_only_label"]
    search_fields = ["text", "context__setting"]
    list_select_related = ["context"]
    raw_id_fields = ["context", "author", "prompted_by"]
    readonly_fields = ["judgment_count"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        # New scenarios go through the service so the model scores them at once.
        try:
            created = services.scenario_create(
                context=obj.context,
                text=obj.text,
                text_only_label=obj.text_only_label,
                is_canary=obj.is_canary,
                canary_min_score=obj.canary_min_score,
                canary_max_score=obj.canary_max_score,
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return
        obj.pk = created.pk


@admin.register(Annotator)
class AnnotatorAdmin(admin.ModelAdmin):
    list_display = ["user", "public_id", "status", "consent_version", "consented_at", "created_at"]
    list_filter = ["status", "consent_version"]
    search_fields = ["user__username", "public_id"]
    readonly_fields = ["public_id", "consent_version", "consented_at"]


class AssignmentItemInline(admin.TabularInline):
    model = AssignmentItem
    extra = 0
    readonly_fields = ["scenario", "position"]
    can_delete = False


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "annotator", "context", "status", "created_at", "expires_at", "completed_at"]
    list_filter = ["status"]
    list_select_related = ["annotator__user", "context"]
    readonly_fields = ["annotator", "context", "created_at", "expires_at", "submitted_at", "completed_at"]
    inlines = [AssignmentItemInline]


@admin.register(Judgment)
class JudgmentAdmin(admin.ModelAdmin):
    list_display = ["id", "annotator", "scenario", "score", "modality", "phase", "model_score", "delta", "canary_passed", "created_at"]
    list_filter = ["phase", "modality", "score", "canary_passed"]
    search_fields = ["scenario__text", "annotator__user__username"]
    list_select_related = ["annotator__user", "scenario"]

    def has_change_permission(self, request, obj=None):
        return False  # append-only

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- Dataset exports (annotation.exports) ---------------------------------------------------
# Records are written by annotation.exports.dataset_export_create (manage.py export_dataset);
# the admin only shows them. The file is downloaded through a staff-only admin view.
from pathlib import PurePosixPath  # noqa: E402

from django.core.exceptions import PermissionDenied  # noqa: E402
from django.http import FileResponse, Http404  # noqa: E402
from django.urls import path, reverse  # noqa: E402
from django.utils.html import format_html  # noqa: E402

from .models import DatasetExport  # noqa: E402


@admin.register(DatasetExport)
class DatasetExportAdmin(admin.ModelAdmin):
    list_display = ["id", "format", "status", "exported", "created_by", "created_at", "finished_at", "download"]
    list_filter = ["format", "status"]
    list_select_related = ["created_by"]
    fields = readonly_fields = [
        "download", "format", "format_version", "status", "error", "sha256", "size_bytes",
        "counts", "options", "created_by", "created_at", "finished_at",
    ]

    def has_add_permission(self, request):
        return False  # made by manage.py export_dataset / annotation.exports

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # provenance of training runs; a failed export has no file to clean up

    @admin.display(description="contexts / scenarios / judgments")
    def exported(self, obj):
        c = obj.counts or {}
        return f"{c.get('contexts', '-')} / {c.get('scenarios', '-')} / {c.get('judgments', '-')}" if c else "-"

    @admin.display(description="file")
    def download(self, obj):
        if obj is None or not obj.file:
            return "-"
        url = reverse("admin:annotation_datasetexport_download", args=[obj.pk])
        return format_html('<a href="{}">{}</a> ({} bytes)', url, PurePosixPath(obj.file.name).name, obj.size_bytes)

    def get_urls(self):
        own = [
            path(
                "<int:pk>/download/",
                self.admin_site.admin_view(self.download_view),
                name="annotation_datasetexport_download",
            )
        ]
        return own + super().get_urls()

    def download_view(self, request, pk):
        if not self.has_view_permission(request):
            raise PermissionDenied
        export = DatasetExport.objects.filter(pk=pk, status=DatasetExport.Status.DONE).first()
        if export is None or not export.file:
            raise Http404("No finished export with that id.")
        try:
            handle = export.file.open("rb")
        except FileNotFoundError:
            raise Http404("The export's file is missing from storage.") from None
        return FileResponse(handle, as_attachment=True, filename=PurePosixPath(export.file.name).name)

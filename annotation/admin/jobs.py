"""Admin of the background jobs: dataset exports and imports, and the page that uploads an import.

"Add" on exports queues one that a worker writes (``annotation.dataset.export.service.dataset_export_queue``;
``manage.py export_dataset`` writes one directly); files download through a staff-only
admin view, never from public media. The import page takes a data file + a zip of images
(linked from the Context and ImportBatch change lists); uploads need the
``annotation.add_context`` permission (researchers have it), and everything a file brings
is escaped when shown. Job records are read-only here; their pages reload while busy.
"""

from pathlib import PurePosixPath

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from annotation.dataset.export import service as export_service
from annotation.dataset.importing import errors as import_errors
from annotation.dataset.importing import readers as import_readers
from annotation.dataset.importing import service as import_service
from ..models import DatasetExport, ImportBatch


class ReloadsWhileBusy:
    """Admin mixin for background jobs (exports, imports): a job's page reloads itself every
    few seconds while the job is queued or running, so its progress and result appear."""

    change_form_template = "admin/refreshing_change_form.html"  # meta refresh when refresh_seconds is set
    busy_statuses = ("queued", "running")

    def job_busy(self, **filters) -> bool:
        return self.model.objects.filter(status__in=self.busy_statuses, **filters).exists()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        refresh = 3 if self.job_busy(pk=object_id) else None
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "refresh_seconds": refresh})



# --- dataset exports -----------------------------------------------------------------------
class NewExportForm(forms.Form):
    """The filters of ``annotation.dataset.export.options.ExportOptions``, defaults from the settings."""

    format = forms.ChoiceField(choices=DatasetExport.Format.choices)
    source = forms.ChoiceField(
        choices=[("reconfirmed", "after grounding checks (reconfirmed where answered)"), ("initial", "first answers only")],
        initial=lambda: settings.MORALE_EXPORT_SOURCE,
    )
    max_sd = forms.FloatField(
        required=False, min_value=0, initial=lambda: settings.MORALE_EXPORT_MAX_SD,
        help_text="Drop scenarios whose judgments' sd is above this (paper: 1.2). Empty: keep all.",
    )
    include_screened = forms.BooleanField(required=False, initial=lambda: settings.MORALE_EXPORT_INCLUDE_SCREENED)
    include_canaries = forms.BooleanField(required=False, initial=lambda: settings.MORALE_EXPORT_INCLUDE_CANARIES)
    include_imported = forms.BooleanField(
        required=False, initial=lambda: settings.MORALE_EXPORT_INCLUDE_IMPORTED,
        help_text="Keep imported ratings and pre-aggregated scores (marked with their import batch in the file).",
    )

    def export_arguments(self) -> dict:
        data = dict(self.cleaned_data)
        return {"fmt": data.pop("format"), **data}


@admin.register(DatasetExport)
class DatasetExportAdmin(ReloadsWhileBusy, admin.ModelAdmin):
    list_display = ["id", "format", "status", "progress", "exported", "created_by", "created_at", "finished_at", "download"]
    list_filter = ["format", "status"]
    list_select_related = ["created_by"]
    fields = readonly_fields = [
        "download", "format", "format_version", "status", "progress", "error", "sha256", "size_bytes",
        "counts", "options", "created_by", "created_at", "finished_at",
    ]
    # The change list reloads itself while an export is queued or running (template).
    change_list_template = "admin/annotation/datasetexport/change_list.html"

    def add_view(self, request, form_url="", extra_context=None):
        """"Add" queues a new export with the chosen filters; a worker writes it."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = NewExportForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            export = export_service.dataset_export_queue(created_by=request.user, **form.export_arguments())
            messages.success(request, f"Export #{export.pk} is queued; this page shows its progress.")
            return redirect("admin:annotation_datasetexport_change", export.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "New dataset export",
            "form": form,
        }
        return render(request, "admin/annotation/datasetexport/new_export.html", context)

    def changelist_view(self, request, extra_context=None):
        refresh = 5 if self.job_busy() else None
        return super().changelist_view(request, {**(extra_context or {}), "refresh_seconds": refresh})

    @admin.display(description="progress")
    def progress(self, obj):
        if obj.status == DatasetExport.Status.QUEUED:
            return "waiting for a worker"
        if not obj.progress_total:
            return "-" if obj.status != DatasetExport.Status.RUNNING else "starting"
        return f"{obj.progress_done} / {obj.progress_total} contexts ({obj.progress_done / obj.progress_total:.0%})"

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


# --- imports -------------------------------------------------------------------------------
ERRORS_SHOWN = 500  # rows of the error table on a page


class ImportForm(forms.Form):
    data_file = forms.FileField(
        label="Data file",
        help_text="CSV (one row per scenario) or JSON Lines (one line per context; a morale-export/1 "
        "JSONL export imports as it is).",
    )
    images = forms.FileField(
        label="Images (zip)",
        help_text="A zip holding the images; image_path in the data file is the path inside it.",
    )
    allow_partial = forms.BooleanField(
        required=False,
        label="Import the good rows",
        help_text="Skip rows with errors and import the others. Off: a file with any error imports nothing.",
    )


def can_import(user) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm("annotation.add_context"))


def errors_table(errors: list[dict], limit: int = ERRORS_SHOWN):
    """The errors as an HTML table; every value escaped."""
    if not errors:
        return "-"
    rows = format_html_join(
        "\n",
        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            ("file" if e.get("row") is None else e["row"], e.get("field") or "", e.get("message", ""))
            for e in errors[:limit]
        ),
    )
    more = format_html("<p>... and {} more.</p>", len(errors) - limit) if len(errors) > limit else ""
    return format_html(
        '<table class="import-errors"><thead><tr><th>row</th><th>field</th><th>message</th></tr></thead>'
        "<tbody>{}</tbody></table>{}",
        rows,
        more,
    )


def counts_summary(batch: ImportBatch) -> str:
    c = batch.counts or {}
    if "contexts_created" not in c:
        if "rows_written" in c:  # running, or failed part way (the reason says what stays imported)
            return f"{c['rows_written']} of {c.get('rows', '?')} rows written"
        return "-"
    summary = (
        f"contexts {c['contexts_created']} new / {c['contexts_present']} present; "
        f"scenarios {c['scenarios_created']} new / {c['scenarios_present']} present"
    )
    if c.get("ratings_created") or c.get("ratings_present") or c.get("ratings_live"):
        summary += f"; ratings {c['ratings_created']} new / {c['ratings_present'] + c['ratings_live']} present"
    if c.get("aggregates_created") or c.get("aggregates_present"):
        summary += f"; mean scores {c['aggregates_created']} new / {c['aggregates_present']} present"
    if c.get("counts_towards_target"):
        summary += " (they count towards the judgments per scenario)"
    return summary


@admin.register(ImportBatch)
class ImportBatchAdmin(ReloadsWhileBusy, admin.ModelAdmin):
    list_display = ["id", "file_name", "format", "status", "summary", "error_count", "created_by", "created_at"]
    list_filter = ["status", "format"]
    search_fields = ["file_name", "file_sha256"]
    list_select_related = ["created_by"]
    change_list_template = "admin/annotation/importbatch/change_list.html"
    fields = readonly_fields = [
        "file_name", "format", "status", "summary", "contexts", "counts", "error_table", "options",
        "file_sha256", "created_by", "created_at", "finished_at",
    ]

    def has_add_permission(self, request):
        return False  # made by the import page or manage.py import_contexts

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # provenance of the contexts it created

    @admin.display(description="created / present")
    def summary(self, obj):
        return counts_summary(obj)

    @admin.display(description="errors")
    def error_count(self, obj):
        return (obj.counts or {}).get("errors", len(obj.errors or []))

    @admin.display(description="errors (row, field, message)")
    def error_table(self, obj):
        return errors_table(obj.errors or [])

    @admin.display(description="contexts it created")
    def contexts(self, obj):
        created = (obj.counts or {}).get("contexts_created")
        if not created:
            return "-"
        url = reverse("admin:annotation_context_changelist") + f"?import_batch__id__exact={obj.pk}"
        return format_html('<a href="{}">{} contexts</a>', url, created)

    def get_urls(self):
        own = [
            path("import/", self.admin_site.admin_view(self.import_view), name="annotation_importbatch_import"),
        ]
        return own + super().get_urls()

    def import_view(self, request):
        if not can_import(request.user):
            raise PermissionDenied
        batch = failure = None
        if request.method == "POST":
            form = ImportForm(request.POST, request.FILES)
            if form.is_valid():
                data, images = form.cleaned_data["data_file"], form.cleaned_data["images"]
                if import_service.import_should_queue(data, images):
                    # Too large (bytes or rows) to import within the request: a worker does it.
                    batch = import_service.import_queue(
                        data_upload=data,
                        images_upload=images,
                        allow_partial=form.cleaned_data["allow_partial"],
                        created_by=request.user,
                    )
                    messages.success(request, f"Import #{batch.pk} is queued; this page shows its progress.")
                    return redirect("admin:annotation_importbatch_change", batch.pk)
                try:
                    batch = import_service.import_contexts(
                        data_file=data,
                        images=images,
                        allow_partial=form.cleaned_data["allow_partial"],
                        created_by=request.user,
                        file_name=data.name,
                        images_name=images.name,
                    )
                except import_errors.ImportFailed as exc:
                    batch, failure = exc.batch, str(exc)
        else:
            form = ImportForm()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import contexts and scenarios",
            "form": form,
            "batch": batch,
            "failure": failure,
            "summary": counts_summary(batch) if batch else "",
            "errors_html": errors_table(batch.errors or []) if batch else "",
            "batch_url": (
                reverse("admin:annotation_importbatch_change", args=[batch.pk])
                if batch and self.has_view_permission(request, batch)
                else ""
            ),
            "contexts_url": (
                reverse("admin:annotation_context_changelist") + f"?import_batch__id__exact={batch.pk}"
                if batch and (batch.counts or {}).get("contexts_created")
                else ""
            ),
            "columns": ", ".join(import_readers.CSV_COLUMNS),
            "inline_max_mb": round(settings.MORALE_IMPORT_INLINE_MAX_BYTES / 2**20, 1),
            "inline_max_rows": settings.MORALE_IMPORT_INLINE_MAX_ROWS,
        }
        return TemplateResponse(request, "admin/annotation/importbatch/import_form.html", context)

"""Admin for imports: the import page (a data file + a zip of images) and the import batches.

Loaded by the last line of ``annotation/admin.py``. The page is linked from the Context
and ImportBatch change lists (templates under ``frontend/templates/admin/annotation/``).
Uploading needs a staff account with the ``annotation.add_context`` permission
(researchers have it). Everything a file brings (scenario text, error messages quoting
cells) is escaped when shown.
"""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from . import imports
from .admin import ReloadsWhileBusy  # this module is loaded at the end of admin.py
from .models import ImportBatch

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
        return "-"
    return (
        f"contexts {c['contexts_created']} new / {c['contexts_present']} present; "
        f"scenarios {c['scenarios_created']} new / {c['scenarios_present']} present"
    )


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
                if data.size + images.size > settings.MORALE_IMPORT_INLINE_MAX_BYTES:
                    # Too large to import within the request (gunicorn's timeout): a worker does it.
                    batch = imports.import_queue(
                        data_upload=data,
                        images_upload=images,
                        allow_partial=form.cleaned_data["allow_partial"],
                        created_by=request.user,
                    )
                    messages.success(request, f"Import #{batch.pk} is queued; this page shows its progress.")
                    return redirect("admin:annotation_importbatch_change", batch.pk)
                try:
                    batch = imports.import_contexts(
                        data_file=data,
                        images=images,
                        allow_partial=form.cleaned_data["allow_partial"],
                        created_by=request.user,
                        file_name=data.name,
                        images_name=images.name,
                    )
                except imports.ImportFailed as exc:
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
            "columns": ", ".join(imports.CSV_COLUMNS),
            "inline_max_mb": round(settings.MORALE_IMPORT_INLINE_MAX_BYTES / 2**20, 1),
        }
        return TemplateResponse(request, "admin/annotation/importbatch/import_form.html", context)

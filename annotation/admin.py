"""Admin for researchers: contexts, scenarios, annotators, assignments, judgments,
disagreements and exports, with the study's bulk actions.

Researchers are staff users in the "researcher" group (annotation.roles); annotators are
never staff and never reach it. Judgments are append-only, so the admin shows them
read-only; annotator status changes go through actions that record who and why.
"""

from pathlib import PurePosixPath

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from modelloop import services as modelloop_services

from . import crowd, exports, services
from .images import check_image_upload
from .models import (
    Annotator,
    AnnotatorScreening,
    Assignment,
    AssignmentItem,
    Context,
    DatasetExport,
    Disagreement,
    Judgment,
    Scenario,
)


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
    list_display = ["id", "setting", "external_id", "image_origin", "image_unreliable", "is_active", "judgment_count", "import_batch", "created_at"]
    list_filter = ["image_origin", "image_unreliable", "is_active", ("import_batch", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["setting", "source", "=external_id"]
    list_select_related = ["import_batch"]
    list_per_page = 50
    readonly_fields = ["image_sha256", "judgment_count", "external_id", "import_batch"]
    inlines = [ScenarioInline]
    actions = ["export_selected", "deactivate", "activate"]

    @admin.action(description="Export the selected contexts (JSON Lines, in the background)", permissions=["export"])
    def export_selected(self, request, queryset):
        export = exports.dataset_export_queue(
            fmt="jsonl", created_by=request.user, context_ids=list(queryset.values_list("pk", flat=True))
        )
        url = reverse("admin:annotation_datasetexport_change", args=[export.pk])
        messages.success(request, format_html('Export #{} is queued: <a href="{}">follow its progress</a>.', export.pk, url))

    def has_export_permission(self, request):
        return request.user.has_perm("annotation.add_datasetexport")

    @admin.action(description="Stop giving out the selected contexts", permissions=["change"])
    def deactivate(self, request, queryset):
        messages.success(request, f"{queryset.update(is_active=False)} context(s) will no longer be given out.")

    @admin.action(description="Give out the selected contexts again", permissions=["change"])
    def activate(self, request, queryset):
        messages.success(request, f"{queryset.update(is_active=True)} context(s) are given out again.")


@admin.register(Scenario)
class ScenarioAdmin(admin.ModelAdmin):
    list_display = ["id", "text", "context", "origin", "text_only_label", "is_canary", "is_retired", "judgment_count"]
    list_filter = ["origin", "is_canary", "is_retired", "text_only_label"]
    search_fields = ["text", "context__setting"]
    list_select_related = ["context"]
    list_per_page = 50
    raw_id_fields = ["context", "author", "prompted_by"]
    readonly_fields = ["judgment_count"]
    actions = ["retire", "unretire", "rescore"]

    @admin.action(description="Retire the selected scenarios (their judgments stay)", permissions=["change"])
    def retire(self, request, queryset):
        changed = services.scenarios_set_retired(scenario_ids=queryset.values_list("pk", flat=True), retired=True)
        messages.success(request, f"{changed} scenario(s) retired: no new page will show them.")

    @admin.action(description="Bring the selected scenarios back", permissions=["change"])
    def unretire(self, request, queryset):
        changed = services.scenarios_set_retired(scenario_ids=queryset.values_list("pk", flat=True), retired=False)
        messages.success(request, f"{changed} scenario(s) are given out again.")

    @admin.action(description="Re-score the selected scenarios with the current model", permissions=["change"])
    def rescore(self, request, queryset):
        queued = modelloop_services.scenarios_rescore(scenario_ids=queryset.values_list("pk", flat=True))
        if queued:
            messages.success(request, f"{queued} scenario(s) queued for scoring by the current model.")
        else:
            messages.error(request, "There is no current model version to score with.")

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


class ScreeningInline(admin.TabularInline):
    """The annotator's status history (append-only)."""

    model = AnnotatorScreening
    fk_name = "annotator"
    fields = readonly_fields = ["created_at", "action", "reasons", "decided_by"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class QualityFlagFilter(admin.SimpleListFilter):
    title = "quality flags"
    parameter_name = "flagged"

    def lookups(self, request, model_admin):
        return [("yes", "flagged"), ("no", "not flagged")]

    def queryset(self, request, queryset):
        # Annotators without flags have quality {} or {"flags": []}.
        flagged = Q(quality__has_key="flags") & ~Q(quality__flags=[])
        if self.value() == "yes":
            return queryset.filter(flagged)
        if self.value() == "no":
            return queryset.exclude(flagged)
        return queryset


@admin.register(Annotator)
class AnnotatorAdmin(admin.ModelAdmin):
    """Annotators by pseudonymous id, with their quality flags; status changes go through
    the actions, which write the history (annotation.quality)."""

    list_display = ["user", "public_id", "platform", "status", "flags", "canary_pass_rate", "judgments", "quality_checked_at"]
    list_filter = ["status", "platform", QualityFlagFilter, "consent_version"]
    search_fields = ["user__username", "=public_id", "=platform_participant_id"]
    list_select_related = ["user"]
    list_per_page = 50
    fields = readonly_fields = [
        "user", "public_id", "platform", "platform_participant_id", "completion_code", "status", "status_reason",
        "flags", "quality", "quality_checked_at", "consent_version", "consented_at", "created_at",
    ]
    inlines = [ScreeningInline]
    actions = ["screen_out", "pause", "reinstate"]

    def has_add_permission(self, request):
        return False  # annotators sign in (or enter from a crowd platform); researchers do not make them

    def has_delete_permission(self, request, obj=None):
        return False  # their judgments reference them

    def get_queryset(self, request):
        # A correlated count, not a JOIN + GROUP BY over every judgment: PostgreSQL evaluates
        # it for the page's rows only (unless the list is sorted by it).
        per_annotator = (
            Judgment.objects.filter(annotator=OuterRef("pk")).order_by().values("annotator").annotate(n=Count("pk")).values("n")
        )
        return super().get_queryset(request).annotate(judgment_total=Coalesce(Subquery(per_annotator), 0))

    @admin.display(description="judgments", ordering="judgment_total")
    def judgments(self, obj):
        return obj.judgment_total

    @admin.display(description="flags")
    def flags(self, obj):
        flags = (obj.quality or {}).get("flags") or []
        if not flags:
            return "-"
        return format_html_join(mark_safe("<br>"), "<strong>{}</strong>: {}", ((f.get("code", ""), f.get("message", "")) for f in flags))

    @admin.display(description="canary pass rate")
    def canary_pass_rate(self, obj):
        rate = ((obj.quality or {}).get("stats") or {}).get("canary_pass_rate")
        return "-" if rate is None else f"{rate:.0%}"

    @admin.display(description="completion code")
    def completion_code(self, obj):
        return crowd.completion_code_for(obj)

    def _change_status(self, request, queryset, action: str, done: str):
        from . import quality

        changed = 0
        for annotator in queryset:
            if action == "reinstate":
                changed += bool(quality.annotator_reinstate(annotator, by=request.user, note=f"lifted in the admin by {request.user}"))
            else:
                reasons = (annotator.quality or {}).get("flags") or [f"decided in the admin by {request.user}"]
                call = quality.annotator_screen_out if action == "screen_out" else quality.annotator_pause
                changed += bool(call(annotator, by=request.user, reasons=reasons))
        messages.success(request, f"{changed} annotator(s) {done}; {queryset.count() - changed} already were.")

    @admin.action(description="Screen out the selected annotators (confirms their flags; exports drop their judgments)", permissions=["change"])
    def screen_out(self, request, queryset):
        self._change_status(request, queryset, "screen_out", "screened out")

    @admin.action(description="Pause the selected annotators (no new pages)", permissions=["change"])
    def pause(self, request, queryset):
        self._change_status(request, queryset, "pause", "paused")

    @admin.action(description="Lift the screening / pause of the selected annotators", permissions=["change"])
    def reinstate(self, request, queryset):
        self._change_status(request, queryset, "reinstate", "reinstated")


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


class ScoreFilter(admin.SimpleListFilter):
    """Fixed 1-5 choices: Django's default filter runs SELECT DISTINCT over every judgment."""

    title = "score"
    parameter_name = "score"

    def lookups(self, request, model_admin):
        return [(str(n), str(n)) for n in range(1, 6)]

    def queryset(self, request, queryset):
        return queryset.filter(score=int(self.value())) if self.value() in {"1", "2", "3", "4", "5"} else queryset


@admin.register(Judgment)
class JudgmentAdmin(admin.ModelAdmin):
    # Kept cheap at MM-SCALE size (bench/admin_lists.py): filters whose choices need no query
    # (no date_hierarchy, no DISTINCT over the table), sorting by id only (indexed), and
    # 50 rows a page (rendering the rows is most of the time).
    list_display = ["id", "annotator", "scenario", "score", "modality", "phase", "model_score", "delta", "canary_passed", "seconds_spent", "created_at"]
    list_filter = ["phase", "modality", ScoreFilter, "canary_passed", "model_version", "annotator__status", "created_at"]
    search_fields = ["scenario__text", "=annotator__user__username", "=annotator__public_id"]
    list_select_related = ["annotator__user", "scenario"]
    raw_id_fields = ["annotator", "scenario", "assignment", "revises", "model_version"]
    sortable_by = ["id"]
    list_per_page = 50
    show_full_result_count = False  # no second COUNT(*) over every judgment on filtered pages

    def has_change_permission(self, request, obj=None):
        return False  # append-only

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Disagreement)
class DisagreementAdmin(JudgmentAdmin):
    """Initial judgments at least MORALE_DISAGREEMENT_THRESHOLD from the model's score, with
    what the annotator answered at the grounding check."""

    list_display = ["id", "annotator", "scenario", "score", "model_score", "delta", "modality", "check_answer", "model_version", "created_at"]
    list_filter = ["modality", ScoreFilter, "model_version", "created_at"]
    list_select_related = ["annotator__user", "scenario", "model_version", "reconfirmation"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .filter(phase=Judgment.Phase.INITIAL, delta__gte=settings.MORALE_DISAGREEMENT_THRESHOLD)
        )

    @admin.display(description="at the check")
    def check_answer(self, obj):
        try:
            again = obj.reconfirmation
        except Judgment.DoesNotExist:
            return "not answered yet"
        if again.score == obj.score and again.modality == obj.modality:
            return "kept"
        return f"revised to {again.score} ({again.modality})"


# --- Dataset exports (annotation.exports) ---------------------------------------------------
# "Add" queues an export that a worker writes (annotation.exports.dataset_export_queue);
# manage.py export_dataset writes one directly. Records are read-only here, and files are
# downloaded through a staff-only admin view, never from public media.


class NewExportForm(forms.Form):
    """The filters of ``annotation.exports.ExportOptions``, defaults from the settings."""

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

    def export_arguments(self) -> dict:
        data = dict(self.cleaned_data)
        return {"fmt": data.pop("format"), **data}


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
            export = exports.dataset_export_queue(created_by=request.user, **form.export_arguments())
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


from . import admin_imports  # noqa: E402,F401  - import page and ImportBatch admin

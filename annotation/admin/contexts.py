"""Admin of the study's content: contexts (with their scenarios inline) and scenarios.

Every new context and scenario is made by the services (``context_create``,
``scenario_create``: image checked and hashed, text cleaned, scored at once), whichever
admin page it is entered on; the bulk actions call services too.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef
from django.urls import reverse
from django.utils.html import format_html

from modelloop import services as modelloop_services

from .. import selectors, services
from annotation.dataset.export import service as export_service
from ..images import check_image_upload
from ..models import Context, ItemReport, Scenario
from .judgments import AdminListStyle


def _scenario_create(request, entered: Scenario) -> Scenario | None:
    """A scenario entered in the admin, created by ``services.scenario_create``; a refused
    one (duplicate, empty text, bad canary range) becomes an error message."""
    try:
        return services.scenario_create(
            context=entered.context,
            text=entered.text,
            text_only_label=entered.text_only_label,
            is_canary=entered.is_canary,
            canary_min_score=entered.canary_min_score,
            canary_max_score=entered.canary_max_score,
            is_retired=entered.is_retired,
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return None


class ContextAdminForm(forms.ModelForm):
    """The fields a researcher edits. An uploaded image is checked here too, so a refused
    file is a message on the form rather than an error after the save."""

    class Meta:
        model = Context
        fields = ["image", "setting", "source", "image_origin", "image_unreliable", "is_active"]

    def clean_setting(self):
        return services.context_text_clean(self.cleaned_data["setting"], field="The setting")

    def clean_source(self):
        return services.context_text_clean(self.cleaned_data["source"], field="The source")

    def clean_image(self):
        image = self.cleaned_data["image"]
        if image and hasattr(image, "read"):
            check_image_upload(image)  # clear message for non-images, bombs, truncation
        return image


class ScenarioAdminForm(forms.ModelForm):
    """A scenario's text passes the same rule as every scenario's
    (``services.scenario_text_clean``), also when an existing one is edited."""

    def clean_text(self):
        return services.scenario_text_clean(self.cleaned_data["text"])


class ScenarioInline(admin.TabularInline):
    model = Scenario
    form = ScenarioAdminForm
    fk_name = "context"
    fields = ["text", "origin", "text_only_label", "is_canary", "canary_min_score", "canary_max_score", "is_retired", "judgment_count"]
    readonly_fields = ["origin", "judgment_count"]
    extra = 0
    show_change_link = True


@admin.register(Context)
class ContextAdmin(AdminListStyle, admin.ModelAdmin):
    form = ContextAdminForm
    list_display = ["id", "setting", "external_id", "image_origin", "image_unreliable", "is_active", "judgment_count", "import_batch", "created_at"]
    list_filter = ["image_origin", "image_unreliable", "is_active", ("import_batch", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["setting", "source", "=external_id"]
    list_select_related = ["import_batch"]
    list_per_page = 50
    readonly_fields = ["image_sha256", "judgment_count", "external_id", "import_batch"]
    inlines = [ScenarioInline]
    actions = ["export_selected", "deactivate", "activate"]

    def save_model(self, request, obj, form, change):
        if change:
            replaced = form.cleaned_data["image"] if "image" in form.changed_data else None
            services.context_update(context=obj, new_image=replaced)
            return
        created = services.context_create(
            image_file=form.cleaned_data["image"],
            **{name: form.cleaned_data[name] for name in ("setting", "source", "image_origin", "image_unreliable", "is_active")},
        )
        # The admin goes on with its own object (inline scenarios, the log, the redirect):
        # make it the stored row.
        for field in Context._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding, obj._state.db = False, created._state.db

    def save_formset(self, request, form, formset, change):
        if formset.model is not Scenario:
            return super().save_formset(request, form, formset, change)
        for scenario in formset.save(commit=False):
            if scenario.pk is None:
                _scenario_create(request, scenario)  # new rows are scored at once, like any new scenario
            else:
                scenario.save()
        for scenario in formset.deleted_objects:
            scenario.delete()

    @admin.action(description="Export the selected contexts (JSON Lines, in the background)", permissions=["export"])
    def export_selected(self, request, queryset):
        export = export_service.dataset_export_queue(
            fmt="jsonl", created_by=request.user, context_ids=list(queryset.values_list("pk", flat=True))
        )
        url = reverse("admin:annotation_datasetexport_change", args=[export.pk])
        messages.success(request, format_html('Export #{} is queued: <a href="{}">follow its progress</a>.', export.pk, url))

    def has_export_permission(self, request):
        return request.user.has_perm("annotation.add_datasetexport")

    @admin.action(description="Stop giving out the selected contexts", permissions=["change"])
    def deactivate(self, request, queryset):
        changed = services.contexts_set_active(context_ids=queryset.values_list("pk", flat=True), active=False)
        messages.success(request, f"{changed} context(s) will no longer be given out.")

    @admin.action(description="Give out the selected contexts again", permissions=["change"])
    def activate(self, request, queryset):
        changed = services.contexts_set_active(context_ids=queryset.values_list("pk", flat=True), active=True)
        messages.success(request, f"{changed} context(s) are given out again.")


class ReportedFilter(admin.SimpleListFilter):
    title = "item reports"
    parameter_name = "reported"

    def lookups(self, request, model_admin):
        return [("yes", "reported"), ("no", "not reported")]

    def queryset(self, request, queryset):
        reported = Exists(ItemReport.objects.filter(scenario=OuterRef("pk")))
        if self.value() == "yes":
            return queryset.filter(reported)
        if self.value() == "no":
            return queryset.exclude(reported)
        return queryset


@admin.register(Scenario)
class ScenarioAdmin(AdminListStyle, admin.ModelAdmin):
    form = ScenarioAdminForm
    list_display = ["id", "text", "context", "origin", "text_only_label", "is_canary", "is_retired", "review_status", "reports", "judgment_count"]
    list_filter = ["origin", "is_canary", "is_retired", "review_status", ReportedFilter, "text_only_label"]
    search_fields = ["text", "context__setting"]
    list_select_related = ["context"]
    list_per_page = 50
    raw_id_fields = ["context", "author", "prompted_by"]
    # The review fields change through the review queues (annotation/admin/reviews.py) only.
    readonly_fields = ["judgment_count", "review_status", "review_note", "reviewed_by", "reviewed_at"]
    actions = ["retire", "unretire", "rescore"]

    def get_queryset(self, request):
        return selectors.scenarios_with_report_count(super().get_queryset(request))

    @admin.display(description="reports", ordering="report_total")
    def reports(self, obj):
        if not obj.report_total:
            return "0"
        url = reverse("admin:annotation_itemreport_changelist") + f"?scenario__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.report_total)

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
        created = _scenario_create(request, obj)  # scored by the model at once
        if created is not None:
            obj.pk = created.pk

"""The researchers' review queues: scenarios annotators wrote (approve / reject with a reason,
in bulk), reported scenarios (keep / retire), and the reports and page comments themselves.

Decisions go through the services (``scenarios_approve``, ``scenarios_reject``,
``reported_scenarios_keep``, ``reported_scenarios_retire``) and need the permission to change
scenarios (researchers have it); the rows themselves are read-only here.
"""

from collections import Counter

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from annotation.services.reports import NOTE_MAX_CHARS

from .. import selectors, services
from ..models import ItemReport, PageComment, ReportedScenario, Scenario, WrittenScenario
from .judgments import AdminListStyle, ReadOnly, minutes


class DefaultChoiceFilter(admin.SimpleListFilter):
    """A list filter with a default choice (the queue's open items) and an explicit "all"."""

    default = ""

    def value(self):
        value = super().value()
        return self.default if value is None else value

    def choices(self, changelist):
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }


class ReviewStatusFilter(DefaultChoiceFilter):
    title = "review"
    parameter_name = "review"
    default = Scenario.Review.PENDING

    def lookups(self, request, model_admin):
        return [*Scenario.Review.choices, ("all", "all")]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset if value == "all" else queryset.filter(review_status=value)


class ReviewActions(ReadOnly):
    """What both queues share: the action permission "review" (the permission to change
    scenarios; the proxies' own change permission is never granted, their pages are
    read-only) and the context column."""

    def has_review_permission(self, request):
        return request.user.has_perm("annotation.change_scenario")

    @admin.display(description="context")
    def image_and_setting(self, obj):
        """The context's image, small, with its setting: what a reviewer needs to judge the text."""
        context = obj.context
        return format_html('<img class="context-thumb" src="{}" alt="">{}', context.image.url, context.setting)


class RejectForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=NOTE_MAX_CHARS,
        help_text="Kept with each rejected scenario (e.g. unrelated to the image, abusive).",
    )


@admin.register(WrittenScenario)
class WrittenScenarioAdmin(AdminListStyle, ReviewActions, admin.ModelAdmin):
    """Scenarios written by annotators. With MORALE_WRITTEN_SCENARIOS=review they wait here
    ("held") until approved; they are scored meanwhile but never given out."""

    list_display = ["id", "text", "image_and_setting", "author", "review_status", "review_note", "created"]
    list_filter = [ReviewStatusFilter]
    search_fields = ["text", "context__setting"]
    list_select_related = ["context", "author__user"]
    list_per_page = 50
    fields = readonly_fields = [
        "text", "context", "author", "prompted_by", "review_status", "review_note", "reviewed_by", "reviewed_at",
        "judgment_count", "created_at",
    ]
    actions = ["approve", "reject"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(origin=Scenario.Origin.ANNOTATOR)

    @admin.display(description="written", ordering="created_at")
    def created(self, obj):
        return minutes(obj.created_at)

    @admin.action(description="Approve the selected scenarios (they join the pool)", permissions=["review"])
    def approve(self, request, queryset):
        changed = services.scenarios_approve(scenario_ids=queryset.values_list("pk", flat=True), by=request.user)
        messages.success(request, f"{changed} scenario(s) approved: other annotators will rate them.")

    @admin.action(description="Reject the selected scenarios, with a reason", permissions=["review"])
    def reject(self, request, queryset):
        """Asks for the reason first (Django's intermediate-page pattern), then rejects them all."""
        form = RejectForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            try:
                changed = services.scenarios_reject(
                    scenario_ids=queryset.values_list("pk", flat=True), by=request.user, reason=form.cleaned_data["reason"]
                )
            except ValidationError as exc:
                form.add_error("reason", exc)
            else:
                messages.success(request, f"{changed} scenario(s) rejected; they will not be given out.")
                return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Reject written scenarios",
            "form": form,
            "scenarios": queryset.select_related("context"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/annotation/writtenscenario/reject.html", context)


class WaitingFilter(DefaultChoiceFilter):
    title = "decision"
    parameter_name = "decision"
    default = "waiting"

    def lookups(self, request, model_admin):
        return [("waiting", "waiting for a decision"), ("open", "with open reports"), ("all", "all reported")]

    def queryset(self, request, queryset):
        if self.value() == "waiting":
            return queryset.filter(review_status=Scenario.Review.REPORTED)
        if self.value() == "open":
            return queryset.filter(report_open__gt=0)
        return queryset


class ReportReasonFilter(admin.SimpleListFilter):
    title = "reason"
    parameter_name = "reason"

    def lookups(self, request, model_admin):
        return ItemReport.Reason.choices

    def queryset(self, request, queryset):
        if self.value() not in ItemReport.Reason.values:
            return queryset
        return queryset.filter(Exists(ItemReport.objects.filter(scenario=OuterRef("pk"), reason=self.value())))


@admin.register(ReportedScenario)
class ReportedScenarioAdmin(AdminListStyle, ReviewActions, admin.ModelAdmin):
    """Scenarios annotators reported. Reports from MORALE_REPORTS_TO_HOLD annotators take one
    out of the pool ("reported") until it is kept or retired here."""

    list_display = ["id", "text", "image_and_setting", "reports", "reasons", "review_status", "is_retired", "judgment_count"]
    list_filter = [WaitingFilter, ReportReasonFilter, "is_retired"]
    search_fields = ["text", "context__setting"]
    list_select_related = ["context"]
    list_per_page = 50
    fields = readonly_fields = ["text", "context", "origin", "review_status", "is_retired", "judgment_count", "reasons"]
    actions = ["keep", "retire"]

    def get_queryset(self, request):
        reported = ItemReport.objects.filter(scenario=OuterRef("pk"))
        queryset = super().get_queryset(request).filter(Exists(reported)).prefetch_related("reports")  # "reasons"
        return selectors.scenarios_with_report_count(queryset)

    @admin.display(description="reports (open)", ordering="report_total")
    def reports(self, obj):
        url = reverse("admin:annotation_itemreport_changelist") + f"?scenario__id__exact={obj.pk}"
        return format_html('<a href="{}">{} ({})</a>', url, obj.report_total, obj.report_open)

    @admin.display(description="reasons")
    def reasons(self, obj):
        counts = Counter(report.get_reason_display() for report in obj.reports.all())  # prefetched
        return ", ".join(f"{label} x{n}" for label, n in sorted(counts.items())) or "-"

    @admin.action(description="Keep the selected scenarios (back to the pool; closes their reports)", permissions=["review"])
    def keep(self, request, queryset):
        changed = services.reported_scenarios_keep(scenario_ids=queryset.values_list("pk", flat=True), by=request.user)
        messages.success(request, f"{changed} scenario(s) kept: they are given out again and their reports are closed.")

    @admin.action(description="Retire the selected scenarios (closes their reports; judgments stay)", permissions=["review"])
    def retire(self, request, queryset):
        changed = services.reported_scenarios_retire(scenario_ids=queryset.values_list("pk", flat=True), by=request.user)
        messages.success(request, f"{changed} scenario(s) retired: no new page will show them.")


@admin.register(ItemReport)
class ItemReportAdmin(AdminListStyle, ReadOnly, admin.ModelAdmin):
    """Every report, one row each: what the annotator said, and what a researcher decided."""

    list_display = ["id", "scenario", "reason", "note", "annotator", "decision", "decided_by", "created"]
    list_filter = ["reason", "decision", "created_at"]
    search_fields = ["scenario__text", "note", "=annotator__public_id"]
    list_select_related = ["scenario", "annotator__user", "decided_by"]
    raw_id_fields = ["scenario", "annotator", "assignment"]
    list_per_page = 50

    @admin.display(description="reported", ordering="created_at")
    def created(self, obj):
        return minutes(obj.created_at)


@admin.register(PageComment)
class PageCommentAdmin(AdminListStyle, ReadOnly, admin.ModelAdmin):
    """The annotators' optional comments, one per page."""

    list_display = ["id", "comment", "annotator", "page", "created"]
    list_filter = ["created_at"]
    search_fields = ["text", "=annotator__public_id"]
    list_select_related = ["annotator__user", "assignment__context"]
    list_per_page = 50

    @admin.display(description="comment")
    def comment(self, obj):
        return obj.text

    @admin.display(description="page")
    def page(self, obj):
        url = reverse("admin:annotation_assignment_change", args=[obj.assignment_id])
        return format_html('<a href="{}">#{} on {}</a>', url, obj.assignment_id, obj.assignment.context.setting)

    @admin.display(description="written", ordering="created_at")
    def created(self, obj):
        return minutes(obj.created_at)

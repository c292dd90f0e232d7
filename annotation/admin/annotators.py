"""Admin of annotators: pseudonymous ids, quality flags, status history, and the status actions.

Status changes go through the actions, which record who and why (``annotation.services.screening``);
the status field itself is read-only here.
"""

from django.contrib import admin, messages
from django.db.models import Q
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from .. import crowd, selectors
from annotation.services import screening
from ..models import Annotator, AnnotatorScreening


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
    the actions, which write the history (annotation.services.screening)."""

    list_display = ["user", "public_id", "platform", "status", "flags", "canary_pass_rate", "judgments", "quality_checked_at"]
    list_filter = ["status", "platform", QualityFlagFilter, "consent_version"]
    search_fields = ["user__username", "=public_id", "=platform_participant_id"]
    list_select_related = ["user"]
    list_per_page = 50
    fields = readonly_fields = [
        "user", "public_id", "platform", "platform_participant_id", "platform_session_id", "completion_code", "status", "status_reason",
        "flags", "quality", "quality_checked_at", "consent_version", "consented_at", "created_at",
    ]
    inlines = [ScreeningInline]
    actions = ["screen_out", "pause", "reinstate"]

    def has_add_permission(self, request):
        return False  # annotators sign in (or enter from a crowd platform); researchers do not make them

    def has_delete_permission(self, request, obj=None):
        return False  # their judgments reference them

    def get_queryset(self, request):
        return selectors.annotators_with_judgment_total(super().get_queryset(request))

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
        changed = 0
        for annotator in queryset:
            if action == "reinstate":
                changed += bool(screening.annotator_reinstate(annotator, by=request.user, note=f"lifted in the admin by {request.user}"))
            else:
                reasons = (annotator.quality or {}).get("flags") or [f"decided in the admin by {request.user}"]
                call = screening.annotator_screen_out if action == "screen_out" else screening.annotator_pause
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

"""Admin of the annotators' work: assignments (pages), judgments, disagreements. All read-only.

Judgments are append-only, so no one adds, edits or deletes them here; the lists are kept
cheap at MM-SCALE size (bench/admin_lists.py) and their key columns fit a 1280 px screen
(scores with 2 decimals, compact dates, text that wraps: ``AdminListStyle``).
"""

from django.contrib import admin
from django.utils import timezone

from .. import selectors
from ..models import Assignment, AssignmentItem, Disagreement, Judgment, PageComment


class AdminListStyle:
    """ModelAdmin mixin: the stylesheet that lets long cells wrap, so lists fit at 1280 px."""

    class Media:
        css = {"all": ["morale/admin.css"]}


def two_decimals(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def minutes(moment) -> str:
    """A time as "2026-12-02 05:20" (local time): half the width of Django's default."""
    return "-" if moment is None else timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")


def check_answer_text(initial: Judgment, again: Judgment | None) -> str:
    """What the annotator did at the grounding check: "kept 4", "kept 4, modality text -> both",
    "revised 4 -> 2" (plus the modality change, if any)."""
    if again is None:
        return "not answered yet"
    if again.score == initial.score:
        said = f"kept {initial.score}"
    else:
        said = f"revised {initial.score} -> {again.score}"
    if again.modality != initial.modality:
        said += f", modality {initial.modality} -> {again.modality}"
    return said


class ReadOnly:
    """Rows written by the annotator pages and the services only."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AssignmentItemInline(admin.TabularInline):
    model = AssignmentItem
    extra = 0
    readonly_fields = ["scenario", "position"]
    can_delete = False


class PageCommentInline(admin.StackedInline):
    """The annotator's comment on the page, if they left one."""

    model = PageComment
    fields = readonly_fields = ["text", "created_at", "updated_at"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "annotator", "context", "status", "created_at", "expires_at", "completed_at"]
    list_filter = ["status"]
    list_select_related = ["annotator__user", "context"]
    readonly_fields = ["annotator", "context", "created_at", "expires_at", "submitted_at", "completed_at"]
    inlines = [AssignmentItemInline, PageCommentInline]


class ScoreFilter(admin.SimpleListFilter):
    """Fixed 1-5 choices: Django's default filter runs SELECT DISTINCT over every judgment."""

    title = "score"
    parameter_name = "score"

    def lookups(self, request, model_admin):
        return [(str(n), str(n)) for n in range(1, 6)]

    def queryset(self, request, queryset):
        return queryset.filter(score=int(self.value())) if self.value() in {"1", "2", "3", "4", "5"} else queryset


@admin.register(Judgment)
class JudgmentAdmin(AdminListStyle, ReadOnly, admin.ModelAdmin):  # append-only
    # Kept cheap at MM-SCALE size (bench/admin_lists.py): filters whose choices need no query
    # (no date_hierarchy, no DISTINCT over the table), sorting by id only (indexed), and
    # 50 rows a page (rendering the rows is most of the time).
    list_display = ["id", "annotator", "scenario", "score", "modality", "phase", "model_score_shown", "delta_shown", "canary_passed", "seconds", "created"]
    list_filter = ["phase", "modality", ScoreFilter, "canary_passed", "model_version", "annotator__status", "created_at"]
    search_fields = ["scenario__text", "=annotator__user__username", "=annotator__public_id"]
    list_select_related = ["annotator__user", "scenario"]
    raw_id_fields = ["annotator", "scenario", "assignment", "revises", "model_version"]
    sortable_by = ["id"]
    list_per_page = 50
    show_full_result_count = False  # no second COUNT(*) over every judgment on filtered pages

    @admin.display(description="model score")
    def model_score_shown(self, obj):
        return two_decimals(obj.model_score)

    @admin.display(description="delta")
    def delta_shown(self, obj):
        return two_decimals(obj.delta)

    @admin.display(description="seconds")
    def seconds(self, obj):
        return "-" if obj.seconds_spent is None else f"{obj.seconds_spent:.1f}"

    @admin.display(description="created")
    def created(self, obj):
        return minutes(obj.created_at)


@admin.register(Disagreement)
class DisagreementAdmin(JudgmentAdmin):
    """Initial judgments at least MORALE_DISAGREEMENT_THRESHOLD from the model's score, with
    what the annotator answered at the grounding check."""

    list_display = ["id", "annotator", "scenario", "score", "model_score_shown", "delta_shown", "modality", "check_answer", "model_version", "created"]
    list_filter = ["modality", ScoreFilter, "model_version", "created_at"]
    list_select_related = ["annotator__user", "scenario", "model_version", "reconfirmation"]

    def get_queryset(self, request):
        return selectors.disagreements(super().get_queryset(request))

    @admin.display(description="at the check")
    def check_answer(self, obj):
        try:
            again = obj.reconfirmation
        except Judgment.DoesNotExist:
            again = None
        return check_answer_text(obj, again)

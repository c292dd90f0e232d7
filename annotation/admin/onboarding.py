"""Admin of onboarding: the instructions and the practice rounds researchers edit, and who
has done which version.

The newest instructions version and the newest practice round with items are the ones
annotators get; a new version is shown to every annotator once, an edit in place to nobody
again. "Save as new" copies an instructions version; the "copy as a new version" action
copies a practice round with its items (their images too, which a form cannot resend).
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce

from .. import selectors, services
from ..images import check_image_upload
from ..models import InstructionsVersion, OnboardingRecord, PracticeItem, PracticeRound
from .judgments import ReadOnly


def _done_count(step: str):
    """How many annotators have done this step's version (a correlated count per row shown)."""
    done = (
        OnboardingRecord.objects.filter(step=step, version=OuterRef("version"))
        .order_by()
        .values("step")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(done), 0)


@admin.register(InstructionsVersion)
class InstructionsVersionAdmin(admin.ModelAdmin):
    list_display = ["version", "is_current", "annotators_read", "created_at"]
    fields = ["version", "task", "scale", "modality", "grounding_check"]
    search_fields = ["version"]
    save_as = True  # "Save as new": a new version, sent to every annotator once

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                read=_done_count(OnboardingRecord.Step.INSTRUCTIONS),
                current_id=Subquery(selectors.instructions_versions().values("pk")[:1]),
            )
        )

    @admin.display(boolean=True, description="shown to annotators")
    def is_current(self, obj):
        return obj.pk == obj.current_id

    @admin.display(description="annotators who read it", ordering="read")
    def annotators_read(self, obj):
        return obj.read


class PracticeItemForm(forms.ModelForm):
    class Meta:
        model = PracticeItem
        fields = ["position", "image", "setting", "text", "min_score", "max_score", "modality", "explanation"]

    def clean_image(self):
        image = self.cleaned_data["image"]
        if image and hasattr(image, "read"):
            check_image_upload(image)  # the same checks as a context image: a clear message
        return image


class PracticeItemInline(admin.StackedInline):
    model = PracticeItem
    form = PracticeItemForm
    extra = 1


class CopyForm(admin.helpers.ActionForm):
    new_version = forms.CharField(required=False, label="new version", help_text="for “copy as a new version”")


@admin.register(PracticeRound)
class PracticeRoundAdmin(admin.ModelAdmin):
    list_display = ["version", "is_current", "item_count", "annotators_done", "created_at"]
    fields = ["version", "intro"]
    search_fields = ["version"]
    inlines = [PracticeItemInline]
    action_form = CopyForm
    actions = ["copy_as_new_version"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                done=_done_count(OnboardingRecord.Step.PRACTICE),
                n_items=Count("items", distinct=True),
                current_id=Subquery(selectors.practice_rounds_offered().values("pk")[:1]),
            )
        )

    @admin.display(boolean=True, description="shown to annotators")
    def is_current(self, obj):
        return obj.pk == obj.current_id

    @admin.display(description="items", ordering="n_items")
    def item_count(self, obj):
        return obj.n_items

    @admin.display(description="annotators who did it", ordering="done")
    def annotators_done(self, obj):
        return obj.done

    @admin.action(description="Copy as a new version (with its items)", permissions=["add"])
    def copy_as_new_version(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one practice round to copy.", messages.ERROR)
            return
        try:
            copy = services.practice_round_copy(
                practice_round=queryset.get(), version=request.POST.get("new_version", "")
            )
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return
        self.message_user(request, f"Created {copy}: edit it; every annotator will practise it once.", messages.SUCCESS)


@admin.register(OnboardingRecord)
class OnboardingRecordAdmin(ReadOnly, admin.ModelAdmin):
    """Who read which instructions and did which practice round, with the practice answers.
    Written by the annotator pages only."""

    list_display = ["annotator", "step", "version", "practice_right", "created_at"]
    list_filter = ["step", "version"]
    search_fields = ["=annotator__public_id", "annotator__user__username"]
    list_select_related = ["annotator__user"]
    fields = readonly_fields = ["annotator", "step", "version", "answers", "created_at"]

    @admin.display(description="practice scores as expected")
    def practice_right(self, obj):
        if obj.step != OnboardingRecord.Step.PRACTICE:
            return "-"
        return f"{sum(1 for a in obj.answers if a.get('score_ok'))} of {len(obj.answers)}"

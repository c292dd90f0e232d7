from django.contrib import admin, messages

from . import services
from .models import ModelVersion, Prediction


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "scorer", "is_current", "created_at", "promoted_at", "description"]
    readonly_fields = ["is_current", "promoted_at", "created_at"]
    actions = ["promote"]

    @admin.action(description="Make the selected version current (and rescore every scenario)")
    def promote(self, request, queryset):
        if queryset.count() != 1:
            messages.error(request, "Select exactly one version to promote.")
            return
        version = services.model_version_promote(model_version=queryset.get())
        messages.success(request, f"{version.name} is now current; rescoring has been queued.")


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["scenario", "model_version", "status", "score", "error", "created_at"]
    list_filter = ["status", "model_version"]
    search_fields = ["scenario__text"]
    list_select_related = ["scenario", "model_version"]
    raw_id_fields = ["scenario"]

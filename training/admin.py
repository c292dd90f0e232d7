"""Training runs in the admin: watch progress and metrics, start a run."""

from django.contrib import admin, messages
from django.db import transaction
from django.shortcuts import redirect
from django.urls import path
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from . import services, tasks
from .models import RetrainPolicy, TrainingRun


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    change_list_template = "admin/training/trainingrun/change_list.html"
    list_display = ["id", "status", "progress_percent", "triggered_by", "export", "model_version", "promoted",
                    "created_at", "finished_at"]
    list_filter = ["status", "promoted", "triggered_by"]
    list_select_related = ["export", "model_version"]
    fields = readonly_fields = [
        "status", "progress", "triggered_by", "config", "export", "model_version", "promoted", "gate_reason",
        "test_figures", "metrics", "error", "log", "created_at", "started_at", "finished_at", "heartbeat_at",
    ]

    def has_add_permission(self, request):
        return False  # started with the button (or manage.py train_head, or celery beat)

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="progress")
    def progress_percent(self, obj):
        return f"{obj.progress:.0%}"

    FIGURES = [("ndcg@5", "NDCG@5"), ("mrr", "MRR"), ("unsafe_rate_pooled", "Unsafe Rate"),
               ("mae", "MAE vs human mean"), ("ece", "ECE"),
               ("grounding_share", "share of judgments sent to a grounding check"), ("n_lists", "test lists")]

    @admin.display(description="test figures")
    def test_figures(self, obj):
        """The run's test figures side by side: deployed, before calibration, and both
        versions at the gate; with the run's warnings (a small test split)."""
        stored = obj.metrics or {}
        gate = stored.get("gate") or {}
        columns = [(t, v) for t, v in [
            ("deployed", stored.get("test")), ("before calibration", stored.get("test_before_calibration")),
            ("candidate at the gate", gate.get("candidate")), ("current at the gate", gate.get("current")),
        ] if v]
        if not columns:
            return "not evaluated yet"

        def cell(values, key):
            value = values.get(key)
            return "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))

        rows = format_html_join("", "<tr><th>{}</th>{}</tr>", (
            (label, format_html_join("", "<td>{}</td>", ((cell(v, key),) for _, v in columns)))
            for key, label in self.FIGURES
        ))
        head = format_html_join("", "<th>{}</th>", ((title,) for title, _ in columns))
        warnings = format_html_join("", "<p><strong>{}</strong></p>", ((w,) for w in stored.get("warnings") or []))
        csv = format_html("<p>Per-scenario predictions: {}</p>", stored["predictions_csv"]) if stored.get(
            "predictions_csv") else ""
        return format_html("<table><tr><th></th>{}</tr>{}</table>{}{}", head, rows, warnings, csv)

    def get_urls(self):
        start = path("start/", self.admin_site.admin_view(require_POST(self.start_view)), name="training_trainingrun_start")
        return [start, *super().get_urls()]

    def start_view(self, request):
        """Queue a run on a fresh export; a worker on queue gpu trains it."""
        if not request.user.has_perm("training.view_trainingrun"):
            messages.error(request, "You may not start training runs.")
            return redirect("admin:training_trainingrun_changelist")
        try:
            with transaction.atomic():
                run = services.training_run_queue(triggered_by=TrainingRun.Trigger.ADMIN)
                transaction.on_commit(lambda: services.training_run_send(run_id=run.pk, task=tasks.execute_run))
        except services.TrainingRunInProgress as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"{run} queued; this page shows its progress.")
        return redirect("admin:training_trainingrun_changelist")


@admin.register(RetrainPolicy)
class RetrainPolicyAdmin(admin.ModelAdmin):
    """The retrain trigger's threshold (one row): Training > Retrain policy."""

    fields = ["after_judgments", "in_effect", "updated_at"]
    readonly_fields = ["in_effect", "updated_at"]
    list_display = ["__str__", "after_judgments", "in_effect"]

    def has_add_permission(self, request):
        return super().has_add_permission(request) and not RetrainPolicy.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False  # emptying the field returns to the deployment default

    def save_model(self, request, obj, form, change):
        obj.pk = RetrainPolicy.SINGLETON_PK
        super().save_model(request, obj, form, change)

    @admin.display(description="in effect now")
    def in_effect(self, obj=None):
        from . import trigger

        threshold = trigger.retrain_threshold()
        if threshold == 0:
            return "off (no run is queued by new judgments)"
        since = trigger.last_export_time()
        count = trigger.usable_judgments_since(since)
        return f"a run after {threshold} new judgments; {count} arrived since the last run's export"

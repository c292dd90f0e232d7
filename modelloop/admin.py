from django.contrib import admin, messages
from django.utils import timezone
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join

from . import services
from .models import ModelVersion, Prediction


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "scorer", "is_current", "load_status", "backbone_ref", "created_at", "promoted_at", "description"]
    readonly_fields = ["is_current", "promoted_at", "created_at", "load_status", "load_checked_at", "backbone_ref",
                       "test_figures"]
    fieldsets = [
        (None, {"fields": ["name", "scorer", "description", "is_current", "promoted_at", "created_at"]}),
        ("Test figures (what annotators see)", {"fields": ["test_figures"]}),
        ("Worker load check", {"fields": ["load_status", "load_checked_at"]}),
        ("Model", {"fields": ["config", "backbone_ref", "head_weights", "lora_adapter", "calibration", "metrics"]}),
    ]
    actions = ["promote"]

    @admin.display(description="load status")
    def load_status(self, obj: ModelVersion) -> str:
        """What the last worker that loaded this version reported; the error in full, in red."""
        if obj.load_error:
            return format_html('<strong style="color:#ba2121">load failed:</strong> {}', obj.load_error)
        return "loaded" if obj.load_checked_at else "not loaded by a worker yet"

    FIGURES = [("ndcg@5", "NDCG@5"), ("unsafe_rate_pooled", "Unsafe Rate"), ("mae", "MAE vs human mean"),
               ("ece", "ECE"), ("grounding_share", "share of judgments sent to a grounding check"),
               ("n_lists", "test lists")]

    @admin.display(description="test figures")
    def test_figures(self, obj: ModelVersion) -> str:
        """The stored test metrics (training.services writes them): the candidate and the
        version it was compared with at the gate, and the raw head before calibration."""
        stored = obj.metrics or {}
        gate = stored.get("gate") or {}
        columns = [("on its test split", stored.get("test")), ("before calibration", stored.get("test_before_calibration")),
                   ("at the gate", gate.get("candidate")), ("current version at the gate", gate.get("current"))]
        columns = [(title, values) for title, values in columns if values]
        if not columns:
            return "no test figures stored (not trained by a training run)"

        def cell(values, key):
            value = values.get(key)
            return "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))

        rows = format_html_join(
            "", "<tr><th>{}</th>{}</tr>",
            ((label, format_html_join("", "<td>{}</td>", ((cell(v, key),) for _, v in columns)))
             for key, label in self.FIGURES),
        )
        head = format_html_join("", "<th>{}</th>", ((title,) for title, _ in columns))
        warnings = format_html_join("", "<p>{}</p>", ((w,) for w in stored.get("warnings") or []))
        return format_html("<table><tr><th></th>{}</tr>{}</table>{}", head, rows, warnings)

    @admin.action(description="Make the selected version current (and rescore every scenario)")
    def promote(self, request, queryset):
        if queryset.count() != 1:
            messages.error(request, "Select exactly one version to promote.")
            return
        version = services.model_version_promote(model_version=queryset.get())
        messages.success(request, f"{version.name} is now current; rescoring has been queued.")
        if version.load_error:
            messages.warning(request, f"The last attempt to load it failed: {version.load_error}")


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["scenario", "model_version", "status", "score_shown", "error", "created"]
    list_filter = ["status", "model_version"]
    search_fields = ["scenario__text"]
    list_select_related = ["scenario", "model_version"]
    raw_id_fields = ["scenario"]

    class Media:
        css = {"all": ["morale/admin.css"]}  # long scenario texts wrap: the list fits at 1280 px

    @admin.display(description="score", ordering="score")
    def score_shown(self, obj: Prediction) -> str:
        return "-" if obj.score is None else f"{obj.score:.2f}"

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Prediction) -> str:
        return timezone.localtime(obj.created_at).strftime("%Y-%m-%d %H:%M")


# --- robustness probes (issue 14, training/probes): a separate block of ModelVersionAdmin -------
def _probe_figures(self, obj: ModelVersion) -> str:
    """The headline figures of the version's latest probes (``training.ProbeResult`` through
    the ``probe_results`` relation) and the severity curve plot of the latest one."""
    results = list(
        obj.probe_results.filter(run__status="succeeded", is_reference=False).select_related("run", "run__against")
        .order_by("-run_id")[:5]
    ) if obj.pk else []
    if not results:
        return "not probed yet: manage.py probe_model --version <id> (docs/probes.md)"
    head = ["run", "against", "pairs", "flip rate", "mean |shift|", "MAE clean", "mCE", "Rel. mCE", "persuasion", "image reliance"]

    def cell(value) -> str:
        return "–" if value is None else f"{value:.3f}"

    rows = format_html_join(
        "",
        "<tr><td>#{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                r.run_id, r.run.against.name if r.run.against else "–", r.run.n_pairs, cell(r.flip_rate),
                cell(r.mean_abs_shift), cell(r.clean_error), cell(r.mce), cell(r.rel_mce),
                cell(r.persuasion_sensitivity), cell(r.image_reliance),
            )
            for r in results
        ),
    )
    try:
        svg = reverse("annotation:probe_severity_svg", args=[obj.pk])
        page = reverse("annotation:probe_version", args=[obj.pk])
    except NoReverseMatch:
        svg = page = ""
    plot = format_html(
        '<p><img src="{}" alt="Error under corruption by severity" width="640"></p><p><a href="{}">All probe figures</a></p>',
        svg, page,
    ) if svg else ""
    header = format_html_join("", "<th>{}</th>", ((h,) for h in head))
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>{}", header, rows, plot)


_probe_figures.short_description = "robustness probes"
ModelVersionAdmin.probe_figures = _probe_figures
ModelVersionAdmin.readonly_fields = [*ModelVersionAdmin.readonly_fields, "probe_figures"]
ModelVersionAdmin.fieldsets = [*ModelVersionAdmin.fieldsets, ("Robustness probes", {"fields": ["probe_figures"]})]

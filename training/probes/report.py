"""A probe run's figures as plain-text tables (the command's output, the docs' examples) and
as the rows the admin and dashboard show. Reads ``ProbeResult`` rows only."""

from __future__ import annotations

from ..models import ProbeResult, ProbeRun

HEADLINE = (
    ("flip_rate", "flip rate"),
    ("flip_rate_image", "flip img"),
    ("flip_rate_text", "flip text"),
    ("mean_abs_shift", "|shift|"),
    ("kendall_tau", "tau"),
    ("clean_error", "MAE clean"),
    ("mce", "mCE"),
    ("rel_mce", "Rel. mCE"),
    ("persuasion", "persuasion"),
    ("image_reliance", "img reliance"),
    ("setting_reliance", "setting rel."),
)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def headline(result: ProbeResult) -> dict:
    """The headline figures of one result, by the keys of ``HEADLINE``."""
    f = result.figures
    return {
        "flip_rate": f.get("flip_rate"),
        "flip_rate_image": f.get("flip_rate_image"),
        "flip_rate_text": f.get("flip_rate_text"),
        "mean_abs_shift": f.get("mean_abs_shift"),
        "kendall_tau": f.get("kendall_tau"),
        "clean_error": f.get("clean", {}).get("error"),
        "mce": f.get("corruption", {}).get("mce"),
        "rel_mce": f.get("corruption", {}).get("rel_mce"),
        "persuasion": f.get("persuasion", {}).get("sensitivity"),
        "image_reliance": f.get("modality", {}).get("image_reliance"),
        "setting_reliance": f.get("modality", {}).get("setting_reliance"),
    }


def severity_table(result: ProbeResult) -> tuple[list[int], list[tuple[str, list[float | None]]]]:
    """(severities, [(corruption, error at each severity)]) for the severity curve."""
    errors = result.figures.get("corruption", {}).get("errors", {})
    severities = sorted({int(s) for by in errors.values() for s in by})
    return severities, [(c, [by.get(str(s)) for s in severities]) for c, by in errors.items()]


def text_table(run: ProbeRun) -> str:
    results = list(ProbeResult.objects.filter(run=run).select_related("model_version").order_by("is_reference"))
    lines = [f"{run.n_pairs} pairs in {run.n_contexts} contexts, suite {run.suite}, split {run.split}, seed {run.seed}"
             f"{f', {run.seconds:.1f} s' if run.seconds else ''}", ""]
    names = [("(ref) " if r.is_reference else "") + r.model_version.name for r in results]
    width = max([len(n) for n in names] + [7])
    lines.append(f"{'Version':<{width}}  " + "  ".join(f"{title:>12}" for _, title in HEADLINE))
    for name, result in zip(names, results):
        values = headline(result)
        lines.append(f"{name:<{width}}  " + "  ".join(f"{_fmt(values[key]):>12}" for key, _ in HEADLINE))
    for name, result in zip(names, results):
        severities, curves = severity_table(result)
        ce = result.figures.get("corruption", {}).get("ce") or {}
        lines += ["", f"{name}: MAE vs human mean by corruption and severity (clean {_fmt(result.clean_error)})"]
        lines.append(f"{'corruption':<18}" + "".join(f"{'s' + str(s):>8}" for s in severities) + f"{'CE':>8}")
        for corruption, values in curves:
            lines.append(f"{corruption:<18}" + "".join(f"{_fmt(v):>8}" for v in values) + f"{_fmt(ce.get(corruption)):>8}")
        by = result.figures.get("modality", {}).get("by_human_modality", {})
        lines.append("image reliance by human modality label: " + ", ".join(
            f"{label} {_fmt(block['image_reliance'])} (n={block['n']})" for label, block in by.items()
        ))
    if results:
        humans = results[0].figures.get("human_modality", {})
        lines += ["", f"humans: {humans.get('n_judgments', 0)} judgments, share labelled image or both "
                      f"{_fmt(humans.get('share_image_or_both'))}"]
        for label, block in humans.get("by_modality", {}).items():
            lines.append(
                f"  {label:<6} share {_fmt(block['share'])}, off their text-only label {_fmt(block['diverging_from_text_only'])}, "
                f"mean shift vs text-only {_fmt(block['mean_text_only_shift'])} (n={block['n_with_text_only_label']})"
            )
    lines.append("\nflip rate: share of pairs crossing 2.5 under meaning-preserving changes; lower is better "
                 "except tau and reliance (docs/probes.md).")
    return "\n".join(lines)

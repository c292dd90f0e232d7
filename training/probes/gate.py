"""The promotion gate's probe option: refuse a candidate whose flip rate or Rel. mCE is worse
than the current version's by more than a setting. Off unless a setting is given.

- ``MORALE_GATE_MAX_FLIP_RATE_INCREASE``: the candidate's flip rate may exceed the current
  version's by at most this (e.g. 0.02); unset: not checked.
- ``MORALE_GATE_MAX_REL_MCE``: the candidate's Rel. mCE against the current version may be
  at most this (e.g. 1.1); unset: not checked.

Both figures come from one probe run of the candidate against the current version (the
latest succeeded one; if there is none, a pilot probe runs now, on the latest export's test
lists). Called by ``training.gate.gate_decision``.
"""

from __future__ import annotations

from django.conf import settings

from modelloop.models import ModelVersion

from ..models import ProbeResult, ProbeRun
from .runner import probe_run_create, probe_run_execute


def _limits() -> tuple[float | None, float | None]:
    return (
        getattr(settings, "MORALE_GATE_MAX_FLIP_RATE_INCREASE", None),
        getattr(settings, "MORALE_GATE_MAX_REL_MCE", None),
    )


def probe_for_gate(candidate: ModelVersion, current: ModelVersion) -> ProbeRun:
    """The latest succeeded probe of ``candidate`` against ``current``, run now if there is none."""
    run = (
        ProbeRun.objects.filter(model_version=candidate, against=current, status=ProbeRun.Status.SUCCEEDED)
        .order_by("-id")
        .first()
    )
    if run is None:
        run = probe_run_execute(run_id=probe_run_create(model_version=candidate, against=current).pk)
    return run


def probe_gate_reason(candidate: ModelVersion, current: ModelVersion | None) -> str | None:
    """Why the probe refuses ``candidate`` over ``current``, or None (passed, or the option is off)."""
    max_flip_increase, max_rel_mce = _limits()
    if (max_flip_increase is None and max_rel_mce is None) or current is None:
        return None
    run = probe_for_gate(candidate, current)
    if run.status != ProbeRun.Status.SUCCEEDED:
        return f"the robustness probe of the candidate could not run ({run.error}); the probe gate refuses it"
    results = {r.is_reference: r for r in ProbeResult.objects.filter(run=run)}
    mine, theirs = results.get(False), results.get(True)
    problems = []
    if max_flip_increase is not None and mine and theirs:
        if mine.flip_rate is None or theirs.flip_rate is None:
            problems.append("the probe has no flip rate to compare")
        elif mine.flip_rate > theirs.flip_rate + max_flip_increase:
            problems.append(
                f"probe flip rate {mine.flip_rate:.4f} is above the current {theirs.flip_rate:.4f} "
                f"by more than {max_flip_increase} (probe run #{run.pk})"
            )
    if max_rel_mce is not None and mine:
        if mine.rel_mce is None:
            problems.append(f"the probe has no Rel. mCE (probe run #{run.pk}: no corrupted error to normalise by)")
        elif mine.rel_mce > max_rel_mce:
            problems.append(f"probe Rel. mCE {mine.rel_mce:.4f} is above {max_rel_mce} (probe run #{run.pk})")
    return "; ".join(problems) or None

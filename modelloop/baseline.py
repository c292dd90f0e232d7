"""The version a fresh deployment starts with: the built-in, untrained image-aware prior.

Plain constants, so the data migrations can use them without importing models.

- The *text baseline* (``zero-shot-text-baseline-v1``, scorer ``zero-shot-text-baseline``)
  was the first placeholder: text only, it ignores the image (migration 0002 created it).
- The *image-aware prior* (``image-aware-prior-v1``, scorer ``image-aware-prior``,
  ``modelloop/scoring/prior.py``) replaces it: migration 0004 makes it current where the text
  baseline is current and no other version exists, and ``ensure_current_version`` creates it.
Both are "built-in": automatic promotions (``MORALE_VLM_PATH``) may replace either.
"""

TEXT_BASELINE_NAME = "zero-shot-text-baseline-v1"
TEXT_BASELINE_SCORER = "zero-shot-text-baseline"
TEXT_BASELINE_DESCRIPTION = (
    "Zero-shot text-only baseline: cosine similarity of the MiniLM text embedding of "
    "'setting + scenario' to acceptable vs unacceptable descriptions, mapped to 1-5. "
    "It ignores the image; it is a placeholder until a trained head is promoted."
)

BASELINE_NAME = "image-aware-prior-v1"
BASELINE_SCORER = "image-aware-prior"
BASELINE_DESCRIPTION = (
    "Image-aware prior (untrained baseline): EfficientNet-Lite0 names what the image shows (its "
    "ImageNet classes); those words and the setting pick topics (animals, children, hot drinks, a "
    "stove, traffic, water, medicine, a launch site, cameras) with anchor sentences for acceptable "
    "and unacceptable acts; the MiniLM similarity of the scenario to those anchors is mapped to 1-5. "
    "It is a placeholder with common sense until a trained head passes the gate "
    "(modelloop/scoring/prior.py; sanity set tests/data/prior_sanity.jsonl)."
)

BUILTIN_NAMES = (BASELINE_NAME, TEXT_BASELINE_NAME)


def ensure_text_baseline(ModelVersion) -> None:
    """Migration 0002: create the text baseline as the current version if none is current."""
    if not ModelVersion.objects.filter(is_current=True).exists():
        ModelVersion.objects.update_or_create(
            name=TEXT_BASELINE_NAME,
            defaults={"scorer": TEXT_BASELINE_SCORER, "description": TEXT_BASELINE_DESCRIPTION, "is_current": True},
        )


def ensure_current_version(ModelVersion) -> None:
    """Create the image-aware prior as the current version if no version is current.

    Takes the model class, so a migration can pass its historical model.
    """
    if not ModelVersion.objects.filter(is_current=True).exists():
        ModelVersion.objects.update_or_create(
            name=BASELINE_NAME,
            defaults={"scorer": BASELINE_SCORER, "description": BASELINE_DESCRIPTION, "is_current": True},
        )


def prior_replaces_text_baseline(ModelVersion, now) -> bool:
    """Migration 0004: where the text baseline is current and no other version exists (nothing
    trained or registered), make the image-aware prior current. Returns whether it did.

    Predictions of the new current version are queued by the worker's sweep
    (``modelloop.sweep_unscored``), as after any promotion without a worker at hand.
    """
    current = ModelVersion.objects.filter(is_current=True).first()
    if current is None or current.name != TEXT_BASELINE_NAME:
        return False
    if ModelVersion.objects.exclude(name__in=BUILTIN_NAMES).exists():
        return False
    ModelVersion.objects.filter(pk=current.pk).update(is_current=False)
    ModelVersion.objects.update_or_create(
        name=BASELINE_NAME,
        defaults={"scorer": BASELINE_SCORER, "description": BASELINE_DESCRIPTION, "is_current": True, "promoted_at": now},
    )
    return True

"""The version a fresh deployment starts with: the labelled zero-shot baseline.

Plain constants, so the data migration can use them without importing models.
"""

BASELINE_NAME = "zero-shot-text-baseline-v1"
BASELINE_SCORER = "zero-shot-text-baseline"
BASELINE_DESCRIPTION = (
    "Zero-shot text-only baseline: cosine similarity of the MiniLM text embedding of "
    "'setting + scenario' to acceptable vs unacceptable descriptions, mapped to 1-5. "
    "It ignores the image; it is a placeholder until a trained head is promoted."
)


def ensure_current_version(ModelVersion) -> None:
    """Create the baseline as the current version if no version is current.

    Takes the model class, so the migration can pass its historical model.
    """
    if not ModelVersion.objects.filter(is_current=True).exists():
        ModelVersion.objects.update_or_create(
            name=BASELINE_NAME,
            defaults={"scorer": BASELINE_SCORER, "description": BASELINE_DESCRIPTION, "is_current": True},
        )

"""The instructions a fresh deployment starts with, in the MM-SCALE paper's words.

The task as the paper's crowd interface put it (appendix 8.2 and figure 14), the modality
question and definitions (section 3.2, appendix 11) and the grounding check (section 3.2,
fig. 4). Plain constants, so the data migration can use them without importing models;
researchers edit the text in the admin (Instructions versions), and a new version there is
shown to every annotator once.
"""

DEFAULT_VERSION = "2026-11-v1"

DEFAULT_TEXT = {
    "task": (
        "Rate the moral acceptability of scenarios given the image as setting.\n\n"
        "On each page you see an image representing a social context and 3 to 5 short scenarios: "
        "actions that could happen within that context. For each scenario, (1) rate its moral "
        "acceptability on a 5-point scale, and (2) select the modality (image, text, or both) that "
        "influenced your judgment the most.\n\n"
        "Judge each action in the setting the image shows: the same action can be fine in one "
        "setting and wrong in another."
    ),
    "scale": (
        "The scale runs from 1 (very unacceptable) to 5 (very acceptable); 3 is neutral. Use the "
        "whole scale. There is no right answer: we want your own judgment."
    ),
    "modality": (
        "Then say what drove your judgment: was it primarily influenced by the visual content, "
        "the text, or both?"
    ),
    "grounding_check": (
        "A computer model also scores every scenario. When its score is far from yours, the "
        "case is flagged for a grounding check: you see the model's score beside yours, say "
        "again whether your judgment depends primarily on the text, the image or both, and keep "
        "or revise your score. Your first rating stays stored as you gave it, and the model is "
        "often wrong: keep your score if you still think it is right.\n\n"
        "When you and the model agree, you may be asked to add a new scenario: an alternative "
        "action that could occur within the same image. Adding one is optional."
    ),
}


def ensure_instructions(InstructionsVersion) -> None:
    """Create the default instructions if there are none (takes the model class, so the
    migration can pass its historical model)."""
    if not InstructionsVersion.objects.exists():
        InstructionsVersion.objects.create(version=DEFAULT_VERSION, **DEFAULT_TEXT)

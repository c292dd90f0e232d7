"""Writes of the annotation app, one module per entity: annotators, onboarding, content,
assignment, judgments, reports (item reports and page comments), screening.

Views, the admin, the API, tasks and commands call them through this package
(``services.assignment_submit_ratings``, so ``mock.patch("annotation.services.X")`` works);
every function is keyword-only, validates before it writes and runs in one transaction.
"""

from ..crowd import CrowdEntryRefused
from .annotators import annotator_create, annotator_for_user, annotator_record_consent, crowd_annotator
from .assignment import (
    CANDIDATE_CONTEXTS,
    AnnotatorNotActive,
    AssignmentExpired,
    AssignmentNoLongerAvailable,
    StudyFull,
    assignment_complete,
    assignment_get_or_create,
    assignment_open_for,
    assignment_renew,
    assignments_expire,
)
from .content import (
    context_build,
    context_create,
    context_update,
    contexts_set_active,
    scenario_add_by_annotator,
    scenario_create,
    scenario_text_clean,
    scenarios_approve,
    scenarios_reject,
    scenarios_set_retired,
)
from .judgments import (
    MODALITY_MISSING,
    SCORE_MISSING,
    CheckAnswer,
    RatingInput,
    assignment_mark_rendered,
    assignment_submit_ratings,
    checks_mark_shown,
    judgment_reconfirm,
    judgment_token,
    judgments_reconfirm,
    modality_check,
    rating_check,
    score_check,
)
from .onboarding import (
    PracticeAnswer,
    PracticeItemInput,
    instructions_mark_read,
    practice_round_copy,
    practice_round_create,
    practice_submit,
)
from .reports import item_report, page_comment_save, reported_scenarios_keep, reported_scenarios_retire
from .screening import annotator_pause, annotator_reinstate, annotator_screen_out

__all__ = [
    "CANDIDATE_CONTEXTS",
    "MODALITY_MISSING",
    "SCORE_MISSING",
    "AnnotatorNotActive",
    "AssignmentExpired",
    "AssignmentNoLongerAvailable",
    "CheckAnswer",
    "CrowdEntryRefused",
    "PracticeAnswer",
    "PracticeItemInput",
    "RatingInput",
    "StudyFull",
    "annotator_create",
    "annotator_pause",
    "annotator_reinstate",
    "annotator_screen_out",
    "annotator_for_user",
    "annotator_record_consent",
    "assignment_complete",
    "assignment_get_or_create",
    "assignment_mark_rendered",
    "assignment_open_for",
    "assignment_renew",
    "assignment_submit_ratings",
    "assignments_expire",
    "checks_mark_shown",
    "context_build",
    "context_create",
    "context_update",
    "contexts_set_active",
    "crowd_annotator",
    "instructions_mark_read",
    "item_report",
    "judgment_reconfirm",
    "judgment_token",
    "judgments_reconfirm",
    "modality_check",
    "page_comment_save",
    "practice_round_copy",
    "practice_round_create",
    "practice_submit",
    "rating_check",
    "reported_scenarios_keep",
    "reported_scenarios_retire",
    "scenario_add_by_annotator",
    "score_check",
    "scenario_create",
    "scenario_text_clean",
    "scenarios_approve",
    "scenarios_reject",
    "scenarios_set_retired",
]

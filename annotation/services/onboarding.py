"""Writes of onboarding: the instructions read and the practice round answered.

Both are versioned like the consent (``OnboardingRecord``, one row per annotator, step and
version); which step comes next is ``selectors.onboarding_next_step``. Practice answers are
checked against the known ones and kept on the record with the feedback; they never become
judgments.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from ..images import check_image_upload
from ..models import Annotator, OnboardingRecord, PracticeItem, PracticeRound
from .judgments import modality_check, score_check


@dataclass(frozen=True)
class PracticeAnswer:
    item_id: int
    score: int | str
    modality: str


def _record(*, annotator: Annotator, step: str, version: str, answers: list | None = None) -> OnboardingRecord:
    """The annotator's record of this step and version, created once (two tabs: the first wins)."""
    existing = OnboardingRecord.objects.filter(annotator=annotator, step=step, version=version).first()
    if existing is not None:
        return existing
    record = OnboardingRecord(annotator=annotator, step=step, version=version, answers=answers or [])
    record.full_clean(exclude=["annotator"], validate_unique=False)
    try:
        with transaction.atomic():
            record.save()
    except IntegrityError:
        return OnboardingRecord.objects.get(annotator=annotator, step=step, version=version)
    return record


def instructions_mark_read(*, annotator: Annotator, version: str) -> OnboardingRecord:
    """The annotator has read instructions ``version``: not sent there again. Idempotent."""
    return _record(annotator=annotator, step=OnboardingRecord.Step.INSTRUCTIONS, version=version)


def practice_submit(*, annotator: Annotator, practice_round_id: int, answers: list[PracticeAnswer]) -> OnboardingRecord:
    """Check a practice round's answers against the known ones and record them, with whether
    each score and modality was right. Every item must be answered once; ValidationError
    (a dict: item id -> {field: message}) names each missing or bad answer. Idempotent: a
    round answered before keeps its first answers.
    """
    practice_round = PracticeRound.objects.get(pk=practice_round_id)
    done = OnboardingRecord.objects.filter(
        annotator=annotator, step=OnboardingRecord.Step.PRACTICE, version=practice_round.version
    ).first()
    if done is not None:
        return done
    items = list(practice_round.items.all())
    given = {a.item_id: a for a in answers}
    if len(given) != len(answers) or set(given) != {i.pk for i in items}:
        raise ValidationError("Please answer every practice item once.", code="practice_incomplete")
    errors, checked = {}, []
    for item in items:
        answer, fields = given[item.pk], {}
        try:
            score = score_check(answer.score)
        except ValidationError as exc:
            fields["score"] = exc.messages[0]
        try:
            modality = modality_check(answer.modality)
        except ValidationError as exc:
            fields["modality"] = exc.messages[0]
        if fields:
            errors[str(item.pk)] = fields
        else:
            checked.append(_practice_answer(item, score, modality))
    if errors:
        raise ValidationError(errors)
    return _record(
        annotator=annotator, step=OnboardingRecord.Step.PRACTICE, version=practice_round.version, answers=checked
    )


def _practice_answer(item: PracticeItem, score: int, modality: str) -> dict:
    return {
        "item": item.pk,
        "score": score,
        "modality": modality,
        "score_ok": item.accepts_score(score),
        "modality_ok": item.accepts_modality(modality),
    }


@dataclass(frozen=True)
class PracticeItemInput:
    image_file: object  # an upload or a ContentFile with a name
    setting: str
    text: str
    min_score: int
    max_score: int
    explanation: str
    modality: str = ""


@transaction.atomic
def practice_round_create(*, version: str, intro: str, items: list[PracticeItemInput]) -> PracticeRound:
    """A new practice round with its items (the newest round is the one annotators get).
    Each image goes through the upload checks; ValidationError names what is refused."""
    practice_round = PracticeRound(version=version.strip(), intro=intro.strip())
    practice_round.full_clean()
    practice_round.save()
    for position, entered in enumerate(items):
        check_image_upload(entered.image_file)
        item = PracticeItem(
            practice_round=practice_round,
            position=position,
            image=entered.image_file,
            setting=entered.setting.strip(),
            text=entered.text.strip(),
            min_score=entered.min_score,
            max_score=entered.max_score,
            modality=entered.modality,
            explanation=entered.explanation.strip(),
        )
        item.full_clean(exclude=["practice_round"])
        item.save()
    return practice_round


@transaction.atomic
def practice_round_copy(*, practice_round: PracticeRound, version: str) -> PracticeRound:
    """A new version of a practice round with copies of its items (the same image files):
    edit the copy, and every annotator practises it once. ValidationError for a version
    label that is empty or taken."""
    copy = PracticeRound(version=version.strip(), intro=practice_round.intro)
    copy.full_clean()
    copy.save()
    PracticeItem.objects.bulk_create(
        PracticeItem(
            practice_round=copy,
            position=item.position,
            image=item.image.name,
            setting=item.setting,
            text=item.text,
            min_score=item.min_score,
            max_score=item.max_score,
            modality=item.modality,
            explanation=item.explanation,
        )
        for item in practice_round.items.all()
    )
    return copy

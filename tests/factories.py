"""factory_boy factories. Contexts and scenarios are made through the services, so
tests exercise the same validation (image checks, text rules) as the product."""

import itertools

import factory
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.utils import timezone

from annotation import services
from annotation.models import Annotator, Context, InstructionsVersion, OnboardingRecord, PracticeRound, Scenario
from modelloop.models import ModelVersion, Prediction

from .conftest import png_bytes

_counter = itertools.count(1)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-for-tests")


class AnnotatorFactory(factory.django.DjangoModelFactory):
    """An active annotator who has consented to the current consent version and, unless
    ``onboarded=False``, read the current instructions and done the current practice round."""

    class Meta:
        model = Annotator
        skip_postgeneration_save = True

    user = factory.SubFactory(UserFactory)
    consent_version = factory.LazyFunction(lambda: settings.MORALE_CONSENT_VERSION)
    consented_at = factory.LazyFunction(timezone.now)

    @factory.post_generation
    def onboarded(annotator, create, extracted, **kwargs):
        if not create or extracted is False:
            return
        mark_onboarded(annotator)


def mark_onboarded(annotator: Annotator) -> Annotator:
    """Record that the annotator has read every instructions version and done every practice round."""
    done = [(OnboardingRecord.Step.INSTRUCTIONS, v) for v in InstructionsVersion.objects.values_list("version", flat=True)]
    done += [(OnboardingRecord.Step.PRACTICE, v) for v in PracticeRound.objects.values_list("version", flat=True)]
    OnboardingRecord.objects.bulk_create(
        (OnboardingRecord(annotator=annotator, step=s, version=v) for s, v in done), ignore_conflicts=True
    )
    return annotator


def make_context(setting: str | None = None, **kwargs) -> Context:
    n = next(_counter)
    return services.context_create(
        image_file=ContentFile(png_bytes(color=(n % 255, 90, 160)), name=f"ctx{n}.png"),
        setting=setting or f"setting number {n}",
        **kwargs,
    )


def make_scenarios(context: Context, count: int = 4, **kwargs) -> list[Scenario]:
    return [services.scenario_create(context=context, text=f"action {i} in {context.setting}", **kwargs) for i in range(count)]


def make_canary(context: Context, low: int = 1, high: int = 2) -> Scenario:
    return services.scenario_create(
        context=context, text=f"canary in {context.setting}", is_canary=True, canary_min_score=low, canary_max_score=high
    )


def current_version() -> ModelVersion:
    return ModelVersion.objects.get(is_current=True)


def predict(scenario: Scenario, score: float, version: ModelVersion | None = None) -> Prediction:
    """Record what the model said about a scenario (tests choose the model's answer)."""
    return Prediction.objects.create(model_version=version or current_version(), scenario=scenario, score=score)

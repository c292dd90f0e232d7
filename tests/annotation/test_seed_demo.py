"""``manage.py seed_demo``: the demo data loads through the services and only once."""

import io

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.test import RequestFactory
from PIL import Image

from annotation.demo.content import DEMO_ACCOUNTS, DEMO_CONTEXTS, MAX_IMAGE_SIDE
from annotation.models import Annotator, Context, Scenario


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_demo_content_is_well_formed():
    """Checked without the database, so a bad edit to annotation/demo/content.py fails fast."""
    assert 8 <= len(DEMO_CONTEXTS) <= 12
    assert len({c.slug for c in DEMO_CONTEXTS}) == len(DEMO_CONTEXTS)
    assert len({(c.setting, c.source) for c in DEMO_CONTEXTS}) == len(DEMO_CONTEXTS)
    for demo in DEMO_CONTEXTS:
        assert demo.image_origin in {"real", "generated"}
        texts = [s.text for s in demo.scenarios]
        assert len(set(texts)) == len(texts), demo.slug
        assert 3 <= sum(not s.is_canary for s in demo.scenarios) <= 5, demo.slug
        assert sum(s.is_canary for s in demo.scenarios) <= 1, demo.slug
        for scenario in demo.scenarios:
            assert scenario.text_only_label in {-1, 0, 1, None}
    assert sum(any(s.is_canary for s in c.scenarios) for c in DEMO_CONTEXTS) >= 3
    roles = [a.role for a in DEMO_ACCOUNTS]
    assert roles.count("annotator") == 4 and roles.count("researcher") == 1


@pytest.mark.django_db
def test_seed_creates_contexts_scenarios_and_canaries():
    output = seed()

    assert Context.objects.count() == len(DEMO_CONTEXTS) >= 10
    assert f"Created {len(DEMO_CONTEXTS)} contexts" in output
    for context in Context.objects.all():
        ordinary = context.scenarios.filter(is_canary=False)
        assert 3 <= ordinary.count() <= 5, context.setting
        assert context.source and context.image_origin in {"real", "generated"}
        assert len(context.image_sha256) == 64

    canaries = Scenario.objects.filter(is_canary=True)
    assert canaries.count() >= 3
    for canary in canaries:
        assert 1 <= canary.canary_min_score <= canary.canary_max_score <= 5
    assert Scenario.objects.filter(origin="seed").count() == Scenario.objects.count()
    # A real photograph from scikit-image and a drawn scene are both there.
    assert Context.objects.filter(image_origin="real", source__startswith="scikit-image sample").exists()
    assert Context.objects.filter(image_origin="generated", source="drawn by MORALE").exists()


@pytest.mark.django_db
def test_every_context_image_opens_and_is_small_enough():
    seed()
    for context in Context.objects.all():
        with context.image.open("rb") as stored, Image.open(stored) as image:
            image.load()
            assert max(image.size) <= MAX_IMAGE_SIDE, context.setting
            assert image.mode == "RGB"


@pytest.mark.django_db
def test_seed_creates_accounts_that_can_log_in():
    output = seed()

    for account in DEMO_ACCOUNTS:
        user = authenticate(RequestFactory().get("/"), username=account.username, password=account.password)
        assert user is not None, account.username
        assert account.username in output and account.password in output
        if account.role == "annotator":
            assert Annotator.objects.filter(user=user).exists()
            assert not user.is_staff
        else:
            assert user.is_staff and user.is_superuser
            assert not Annotator.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_second_run_creates_nothing_new():
    seed()
    counts = (Context.objects.count(), Scenario.objects.count(), get_user_model().objects.count())

    output = seed()

    assert (Context.objects.count(), Scenario.objects.count(), get_user_model().objects.count()) == counts
    assert "Nothing new" in output

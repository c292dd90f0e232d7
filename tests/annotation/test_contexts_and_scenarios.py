"""Contexts and scenarios: image checks on upload, scenario text rules."""

import io
import struct
import zlib

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from PIL import Image

from annotation import services
from annotation.images import check_image_upload
from annotation.models import Context, ImportBatch, Scenario
from tests.conftest import png_bytes
from tests.factories import AnnotatorFactory, make_context

pytestmark = pytest.mark.django_db


def upload(data: bytes, name="upload.png") -> ContentFile:
    return ContentFile(data, name=name)


def bomb_png(width=30_000, height=30_000) -> bytes:
    """A tiny PNG whose header claims a huge image: 900 megapixels of zeros compress to ~1 MB."""
    raw = zlib.compress(b"\x00" * (width // 8 + 1) * 64)  # a few rows are enough to be parsed

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_context_stores_a_valid_image_with_its_hash():
    context = services.context_create(image_file=upload(png_bytes()), setting="a child crossing a street")
    assert len(context.image_sha256) == 64
    with Image.open(context.image.path) as image:
        assert image.size == (64, 48)


@pytest.mark.parametrize(
    "data,message",
    [
        (b"this is not an image at all", "not an image"),
        (png_bytes()[:60], "broken or truncated"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "not an image"),
        (b"", "empty"),
    ],
    ids=["text", "truncated", "svg", "empty"],
)
def test_bad_uploads_are_refused_with_a_clear_message(data, message):
    with pytest.raises(ValidationError, match=message):
        services.context_create(image_file=upload(data), setting="x")
    assert Context.objects.count() == 0


def test_decompression_bomb_is_refused():
    with pytest.raises(ValidationError, match="pixels"):
        services.context_create(image_file=upload(bomb_png()), setting="x")
    assert Context.objects.count() == 0


def test_oversized_file_is_refused(settings):
    settings.MORALE_MAX_IMAGE_BYTES = 1000
    buffer = io.BytesIO()
    Image.effect_noise((200, 200), 80).convert("RGB").save(buffer, format="PNG")
    with pytest.raises(ValidationError, match="limit"):
        services.context_create(image_file=upload(buffer.getvalue()), setting="x")


def test_empty_setting_is_refused():
    with pytest.raises(ValidationError):
        services.context_create(image_file=upload(png_bytes()), setting="   ")


@pytest.mark.parametrize(
    "text,message",
    [("", "empty"), ("   \n ", "empty"), ("x" * 10_000, "under 500 characters"), (None, "must be text")],
    ids=["empty", "blank", "10k", "none"],
)
def test_bad_scenario_text_is_refused(text, message):
    context = make_context()
    with pytest.raises(ValidationError, match=message):
        services.scenario_create(context=context, text=text)
    assert Scenario.objects.count() == 0


def test_html_in_scenario_text_is_stored_as_plain_text():
    context = make_context()
    scenario = services.scenario_create(context=context, text="<script>alert('x')</script> helping")
    assert scenario.text == "<script>alert('x')</script> helping"  # escaped when shown, see view tests


def test_duplicate_scenario_in_the_same_context_is_refused():
    context = make_context()
    services.scenario_create(context=context, text="Holding the child's hand")
    with pytest.raises(ValidationError, match="already has"):
        services.scenario_create(context=context, text="holding  the child's hand")


def test_annotator_written_scenario_needs_an_author():
    context = make_context()
    with pytest.raises(ValidationError):
        services.scenario_create(context=context, text="new", origin="annotator")
    scenario = services.scenario_create(context=context, text="new", origin="annotator", author=AnnotatorFactory())
    assert scenario.origin == "annotator"


@pytest.mark.parametrize("low,high", [(0, 2), (4, 6), (4, 2), (None, 2)])
def test_canary_needs_a_valid_range(low, high):
    context = make_context()
    with pytest.raises(ValidationError):
        services.scenario_create(context=context, text="gold", is_canary=True, canary_min_score=low, canary_max_score=high)


@pytest.mark.parametrize("label", [-2, 2])
def test_text_only_label_must_be_minus_one_zero_or_one(label):
    with pytest.raises(ValidationError):
        services.scenario_create(context=make_context(), text="labelled", text_only_label=label)


def test_context_build_is_the_rule_for_a_new_context_and_stores_nothing():
    """The bulk import's entry point: a checked image in, an unsaved validated context out."""
    data = upload(png_bytes())
    checked = check_image_upload(data)
    context = services.context_build(image=data, checked=checked, setting="  a kitchen  ", source=" lab ")
    assert context.pk is None and Context.objects.count() == 0
    assert (context.image_sha256, context.setting, context.source) == (checked.sha256, "a kitchen", "lab")
    with pytest.raises(ValidationError):
        services.context_build(image=data, checked=checked, setting="   ")
    with pytest.raises(ValidationError):
        services.context_build(image=data, checked=checked, setting="x", image_origin="painted", check_in_database=False)


def test_context_build_for_a_bulk_caller_costs_no_query(django_assert_num_queries):
    data = upload(png_bytes())
    checked = check_image_upload(data)
    batch = ImportBatch.objects.create(file_name="contexts.csv", format="csv")
    with django_assert_num_queries(0):
        context = services.context_build(
            image=data, checked=checked, setting="a kitchen", external_id="k1", import_batch=batch, check_in_database=False
        )
    assert context.import_batch == batch and context.external_id == "k1"


def test_contexts_set_active_takes_a_context_out_of_the_pool_and_back():
    context = make_context()
    assert services.contexts_set_active(context_ids=[context.pk], active=False) == 1
    assert not Context.objects.get(pk=context.pk).is_active
    services.contexts_set_active(context_ids=[context.pk], active=True)
    assert Context.objects.get(pk=context.pk).is_active

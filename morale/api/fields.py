"""Serializer fields for JSON request bodies that take exactly the JSON type the schema names.

DRF's own fields coerce: ``IntegerField`` takes ``"5"`` and ``5.0``, ``BooleanField``
takes ``"yes"`` and ``1``, ``CharField`` takes ``5``. A request the schema calls invalid
must be refused (400), so a client learns the contract instead of leaning on a guess;
these refuse any other JSON type with a message that names the one expected. Text
fields also refuse control characters (``morale.text``) and say so in the schema.

Imports no app: the apps' request serializers use these.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

from morale.text import CONTROL_FREE_PATTERN, text_check

from .filters import BIGINT_MAX


class JsonIntegerField(serializers.IntegerField):
    """A JSON integer (not a string, float or boolean), by default within the database's
    64-bit range."""

    default_error_messages = {"invalid": "Must be a whole number (a JSON integer), not {kind}."}

    def __init__(self, **kwargs):
        kwargs.setdefault("max_value", BIGINT_MAX)
        kwargs.setdefault("min_value", -BIGINT_MAX - 1)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid", kind=_kind(data))
        return data


class JsonNumberField(serializers.FloatField):
    """A JSON number (integer or decimal), not a string or boolean."""

    default_error_messages = {"invalid": "Must be a number, not {kind}."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid", kind=_kind(data))
        return super().to_internal_value(data)


class JsonBooleanField(serializers.BooleanField):
    """JSON ``true`` or ``false``, not ``"true"``, ``1`` or ``"yes"``."""

    default_error_messages = {"invalid": "Must be true or false, not {kind}."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", kind=_kind(data))
        return data


class JsonTextField(serializers.CharField):
    """A JSON string without control characters (``morale.text``); not a number."""

    default_error_messages = {"invalid": "Must be text (a JSON string), not {kind}."}

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)  # the value is what the client sent
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", kind=_kind(data))
        try:
            text_check(data, field="The text")
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return super().to_internal_value(data)


class JsonTextFieldSchema(OpenApiSerializerFieldExtension):
    """A string with the control-free ``pattern`` and the field's length limits (one schema,
    not drf-spectacular's ``oneOf`` for blank-or-pattern, whose branches overlap at "")."""

    target_class = JsonTextField
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        field = self.target
        schema = {"type": "string", "pattern": CONTROL_FREE_PATTERN}
        if field.max_length is not None:
            schema["maxLength"] = field.max_length
        if not field.allow_blank or field.min_length:
            schema["minLength"] = max(field.min_length or 0, 0 if field.allow_blank else 1)
        return schema


class JsonChoiceField(serializers.ChoiceField):
    """One of ``choices``, given as the JSON type of the choices (``"1"`` is not ``1``)."""

    def to_internal_value(self, data):
        for key in self.choices:
            if type(key) is type(data) and key == data:
                return key
        self.fail("invalid_choice", input=data)


def _kind(value) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", int: "an integer", float: "a decimal number", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)

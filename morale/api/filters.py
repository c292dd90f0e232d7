"""Which query parameters anyone may send: the allow-listed filter backend and its filters.

- ``AllowListedFilterBackend``: django-filter with an explicit ``FilterSet`` per view, and
  every query parameter that is neither one of its filters nor a pagination or format
  parameter is refused with 400. No client can reach an ORM lookup the view did not
  declare (cf. Label Studio CVE-2023-47117, where ``?filter[user__password__startswith]=``
  leaked password hashes one character at a time).
- ``AllowListedOrdering``: ``?ordering=`` on the fields a FilterSet names, the id last, so
  pages never overlap or skip rows.
- ``IdFilter``: an integer id filter (``?scenario=12``), no lookup, no database query to
  validate it (so it cannot tell anyone whether an id exists). Like every integer filter
  (``IntegerFilter``) it takes whole numbers only, within its bounds (ids: 1 to the
  database's 64-bit maximum), so ``?context=10974411365519338934108160`` is a 400 that
  says so, not an overflow in the database driver.
- ``BooleanFilter``: ``true`` or ``false``, nothing else (django-filter's would read
  any other word as "no filter").
- Every query parameter value is refused (400) if it holds a control character
  (``morale.text``); the schema says so with a ``pattern`` on every text parameter.
- An empty value (``?context=``) is the same as leaving the parameter out (the
  browsable API's filter form sends empty fields); the schema says ``allowEmptyValue``.

Imports no app: the apps' FilterSets build on these.
"""

from __future__ import annotations

import re

import django_filters
from django import forms
from django.core.exceptions import ImproperlyConfigured
from django.core.exceptions import ValidationError as DjangoValidationError
from django_filters.constants import EMPTY_VALUES
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework.exceptions import ValidationError
from rest_framework.settings import api_settings

from morale.text import CONTROL_FREE_PATTERN, text_check

# The range of the id columns (BigAutoField) and of every integer column, on SQLite and PostgreSQL.
BIGINT_MAX = 2**63 - 1
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,30}")  # more digits than any bound: refused as invalid


class AllowListedFilterBackend(DjangoFilterBackend):
    """django-filter, strictly: the view must name its ``FilterSet`` (``filterset_class`` or
    ``get_filterset_class()``, never the auto-generated ``filterset_fields``), and a request
    carrying any other query parameter is refused with 400 instead of being ignored."""

    max_reported_name_length = 100

    def get_filterset_class(self, view, queryset=None):
        if getattr(view, "filterset_fields", None):
            raise ImproperlyConfigured(f"{type(view).__name__}: declare a FilterSet, not filterset_fields")
        getter = getattr(view, "get_filterset_class", None)
        filterset_class = getter() if getter else getattr(view, "filterset_class", None)
        if filterset_class is None:
            raise ImproperlyConfigured(f"{type(view).__name__} uses {type(self).__name__} without a FilterSet")
        if queryset is not None and not issubclass(queryset.model, filterset_class._meta.model):
            raise ImproperlyConfigured(
                f"FilterSet {filterset_class.__name__} is for {filterset_class._meta.model}, not {queryset.model}"
            )
        return filterset_class

    @staticmethod
    def control_parameters(view) -> set[str]:
        names = {api_settings.URL_FORMAT_OVERRIDE}
        paginator = getattr(view, "paginator", None)
        for attribute in ("limit_query_param", "offset_query_param", "page_query_param", "page_size_query_param"):
            name = getattr(paginator, attribute, None)
            if name:
                names.add(name)
        return names

    def filter_queryset(self, request, queryset, view):
        filterset_class = self.get_filterset_class(view, queryset)
        allowed = set(filterset_class.base_filters) | self.control_parameters(view)
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            shown = ", ".join(name[: self.max_reported_name_length] for name in unknown[:10])
            raise ValidationError(
                {"detail": f"Unknown query parameter(s): {shown}. Allowed here: {', '.join(sorted(allowed))}."}
            )
        refused = {}
        for name, values in request.query_params.lists():
            for value in values:
                try:
                    text_check(value, field=name)
                except DjangoValidationError as exc:
                    refused[name] = exc.messages
        if refused:
            raise ValidationError(refused)
        return super().filter_queryset(request, queryset, view)


class AllowListedOrdering(django_filters.OrderingFilter):
    """``?ordering=field`` or ``-field`` over the allow-listed ``fields`` only (anything else
    is a 400 from the form's choice validation); the primary key is always the last key."""

    def filter(self, qs, value):
        if value in EMPTY_VALUES:
            return qs
        ordering = [self.get_ordering_value(param) for param in value]
        if not {"id", "-id", "pk", "-pk"} & set(ordering):
            ordering.append("pk")
        return qs.order_by(*ordering)


class StrictIntegerField(forms.Field):
    """A whole number written as digits (an optional minus sign first), within
    ``min_value``..``max_value``; "1.0", "1e3" and " 1" are refused, unlike Django's
    IntegerField. Empty: None."""

    def __init__(self, *, min_value: int, max_value: int, **kwargs):
        self.min_value, self.max_value = min_value, max_value
        super().__init__(**kwargs)

    def to_python(self, value):
        if value in EMPTY_VALUES:
            return None
        text = str(value)
        if not _WHOLE_NUMBER.fullmatch(text):
            raise DjangoValidationError(
                f"Enter a whole number from {self.min_value} to {self.max_value}.", code="invalid"
            )
        number = int(text)
        if not self.min_value <= number <= self.max_value:
            raise DjangoValidationError(
                f"{number} is out of range: enter a whole number from {self.min_value} to {self.max_value}.",
                code="out_of_range",
            )
        return number


class IntegerFilter(django_filters.Filter):
    """Rows whose ``field_name`` equals a whole number between ``min_value`` and
    ``max_value`` (both documented in the schema); anything else is a 400."""

    field_class = StrictIntegerField

    def __init__(self, *args, min_value: int, max_value: int, **kwargs):
        super().__init__(*args, min_value=min_value, max_value=max_value, **kwargs)
        extend_schema_field({"type": "integer", "format": "int64", "minimum": min_value, "maximum": max_value})(self)


class IdFilter(IntegerFilter):
    """Rows whose foreign key (``field_name``, e.g. ``scenario_id``) is this id (1 up to
    the database's 64-bit maximum)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, min_value=1, max_value=BIGINT_MAX, **kwargs)


class StrictBooleanField(forms.Field):
    """``true`` or ``false`` (as the schema's boolean is written in a query); empty: None."""

    def to_python(self, value):
        if value in EMPTY_VALUES:
            return None
        if value in ("true", "false"):
            return value == "true"
        raise DjangoValidationError("Enter true or false.", code="invalid")


@extend_schema_field(OpenApiTypes.BOOL)
class BooleanFilter(django_filters.BooleanFilter):
    """Rows whose ``field_name`` is ``true`` or ``false``; any other word is a 400."""

    field_class = StrictBooleanField


@extend_schema_field({"type": "string", "pattern": CONTROL_FREE_PATTERN})
class TextFilter(django_filters.CharFilter):
    """Rows whose ``field_name`` equals this text exactly (no control characters: the
    backend refuses them in every parameter)."""

"""Which query parameters anyone may send: the allow-listed filter backend and its filters.

- ``AllowListedFilterBackend``: django-filter with an explicit ``FilterSet`` per view, and
  every query parameter that is neither one of its filters nor a pagination or format
  parameter is refused with 400. No client can reach an ORM lookup the view did not
  declare (cf. Label Studio CVE-2023-47117, where ``?filter[user__password__startswith]=``
  leaked password hashes one character at a time).
- ``AllowListedOrdering``: ``?ordering=`` on the fields a FilterSet names, the id last, so
  pages never overlap or skip rows.
- ``IdFilter``: an integer id filter (``?scenario=12``), no lookup, no database query to
  validate it (so it cannot tell anyone whether an id exists).

Imports no app: the apps' FilterSets build on these.
"""

from __future__ import annotations

import django_filters
from django import forms
from django.core.exceptions import ImproperlyConfigured
from django_filters.constants import EMPTY_VALUES
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework.exceptions import ValidationError
from rest_framework.settings import api_settings


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


@extend_schema_field(OpenApiTypes.INT)
class IdFilter(django_filters.NumberFilter):
    """Rows whose foreign key (``field_name``, e.g. ``scenario_id``) equals a whole number."""

    field_class = forms.IntegerField

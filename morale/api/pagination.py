"""Pagination of every list in the API: ``?limit=`` is capped, so no request reads a table whole."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination

from .filters import BIGINT_MAX, StrictIntegerField


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """``?limit=&offset=``; the page size defaults to ``PAGE_SIZE`` and never exceeds ``max_limit``.

    A limit above ``max_limit`` is capped (the page says how many it holds); a limit or
    offset that is not a whole number in range (``limit=0``, ``offset=-1``, ``limit=ten``)
    is a 400 rather than silently the default. Empty: the default.
    """

    max_limit = 500

    def _parse(self, request, name: str, *, min_value: int, max_value: int) -> int | None:
        field = StrictIntegerField(min_value=min_value, max_value=max_value, required=False)
        try:
            return field.clean(request.query_params.get(name))
        except DjangoValidationError as exc:
            raise ValidationError({name: exc.messages}) from None

    def get_limit(self, request):
        limit = self._parse(request, self.limit_query_param, min_value=1, max_value=BIGINT_MAX)
        return self.default_limit if limit is None else min(limit, self.max_limit)

    def get_offset(self, request):
        offset = self._parse(request, self.offset_query_param, min_value=0, max_value=BIGINT_MAX)
        return offset or 0

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.limit_query_param,
                "required": False,
                "in": "query",
                "description": f"Rows per page ({self.default_limit} when left out; above {self.max_limit} is read as {self.max_limit}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX},
            },
            {
                "name": self.offset_query_param,
                "required": False,
                "in": "query",
                "description": "The initial index from which to return the results.",
                "schema": {"type": "integer", "minimum": 0, "maximum": BIGINT_MAX},
            },
        ]

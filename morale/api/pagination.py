"""Pagination of every list in the API: ``?limit=`` is capped, so no request reads a table whole."""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """``?limit=&offset=``; the page size defaults to ``PAGE_SIZE`` and never exceeds ``max_limit``."""

    max_limit = 500

# TEMPORARY restructure shim: re-exports morale.api.permissions, morale.api.pagination, morale.api.filters; the lead removes it after the merge.
"""Old home of the API's permissions, pagination and filters (see ``morale/api/``)."""

from annotation.roles import is_researcher  # noqa: F401
from morale.api.filters import AllowListedFilterBackend, AllowListedOrdering, IdFilter  # noqa: F401
from morale.api.pagination import BoundedLimitOffsetPagination  # noqa: F401
from morale.api.permissions import IsResearcher  # noqa: F401

# TEMPORARY restructure shim: re-exports tests.annotation.dataset.helpers; the lead removes it after the merge.
# (Tests elsewhere import these helpers from here; the export tests live in tests/annotation/dataset/.)
from tests.annotation.dataset.helpers import rate_page, rated_context  # noqa: F401

# TEMPORARY restructure shim: re-exports annotation.admin.jobs; the lead removes it after the merge.
"""Old home of the import page's admin (now ``annotation/admin/jobs.py``)."""

from .admin.jobs import ERRORS_SHOWN, ImportBatchAdmin, ImportForm, can_import, counts_summary, errors_table  # noqa: F401

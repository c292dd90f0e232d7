# TEMPORARY restructure shim: re-exports annotation.research.views, .charts and .dashboard; the lead removes it after the merge.
"""Old path of the researchers' pages; they live in ``annotation.research``."""

from annotation.research.charts import PALETTE, Chart, bar_chart, line_chart, nice_ceiling, progress_chart  # noqa: F401
from annotation.research.dashboard import dashboard_charts, key_figures  # noqa: F401
from annotation.research.views import dashboard, quality_list, researcher_required  # noqa: F401

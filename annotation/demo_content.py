# TEMPORARY restructure shim: re-exports annotation.demo.content; the lead removes it after the merge.
"""Old home of the demo data (now ``annotation/demo/content.py``)."""

from .demo.content import (  # noqa: F401
    DEMO_ACCOUNTS,
    DEMO_CONTEXTS,
    MAX_IMAGE_SIDE,
    SOURCE_DRAWN,
    DemoAccount,
    DemoContext,
    DemoScenario,
)

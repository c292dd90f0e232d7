"""The API's renderers: JSON, and DRF's browsable API under the site's Content-Security-Policy.

DRF's browsable API pages carry an inline ``<style>`` element and ``style`` attributes;
``BrowsableAPIRenderer`` allows inline styles on those pages only (never inline script:
their scripts are files), the way ``csp.decorators.csp_update`` does for a view. Imports no app.
"""

from __future__ import annotations

from csp.constants import UNSAFE_INLINE
from rest_framework import renderers


class BrowsableAPIRenderer(renderers.BrowsableAPIRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        response = (renderer_context or {}).get("response")
        if response is not None:
            response._csp_update = {"style-src": [UNSAFE_INLINE]}  # read by csp.middleware.CSPMiddleware
        return super().render(data, accepted_media_type, renderer_context)

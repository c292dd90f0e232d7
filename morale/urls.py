import posixpath
from pathlib import Path

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import Http404
from django.urls import include, path, re_path
from django.views.static import serve

from annotation import views as annotation_views
from annotation.images import served_content_type

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", annotation_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/", include("morale.api.urls")),
    path("", include("annotation.urls")),
]


# Sent with every context image: a browser that opened one as a page anyway runs nothing
# (sandbox, no script source). Inline style: the browser's own page around an opened image.
MEDIA_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"


def serve_context_image(request, path: str):
    """Context images only, each with the content type Pillow detects in the file (never the
    one its name suggests: an image stored as ``poly.html`` before names came from the
    detected format is still sent as ``image/png``), ``nosniff`` and a sandboxing CSP; a file
    that holds no allowed image is a 404. ``serve`` resolves ``..`` itself, so without the
    first check ``/media/contexts/../exports/<file>`` (or ``%2e%2e``) would serve an export."""
    if ".." in path.split("/") or not posixpath.normpath(path).startswith("contexts/"):
        raise Http404("No such image.")
    content_type = served_content_type(Path(settings.MEDIA_ROOT) / path)
    if content_type is None:
        raise Http404("No such image.")
    response = serve(request, path, document_root=settings.MEDIA_ROOT)
    response.headers["Content-Type"] = content_type
    response.headers.pop("Content-Encoding", None)  # serve() guesses one from a ".gz" name
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = MEDIA_CSP
    return response


if settings.MORALE_SERVE_MEDIA:
    # Embedded default and tests; production serves context images from the web server.
    # Only context images are public: exports and model weights under MEDIA_ROOT are not
    # (exports download through the admin and the API, researchers only).
    urlpatterns += [re_path(r"^media/(?P<path>contexts/.*)$", serve_context_image)]

# Failure pages that need no database: a 503 that retries itself during a database
# outage, the site's 500 page otherwise; JSON 404s under /api/ (morale/errors.py).
handler500 = "morale.errors.server_error"
handler404 = "morale.errors.page_not_found"

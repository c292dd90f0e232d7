import posixpath

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import Http404
from django.urls import include, path, re_path
from django.views.static import serve

from annotation import views as annotation_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", annotation_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/", include("morale.api.urls")),
    path("", include("annotation.urls")),
]


def serve_context_image(request, path: str):
    """Context images only. ``serve`` resolves ``..`` itself, so without this check
    ``/media/contexts/../exports/<file>`` (or ``%2e%2e``) would serve an export or weights."""
    if ".." in path.split("/") or not posixpath.normpath(path).startswith("contexts/"):
        raise Http404("No such image.")
    return serve(request, path, document_root=settings.MEDIA_ROOT)

if settings.MORALE_SERVE_MEDIA:
    # Embedded default and tests; production serves context images from the web server.
    # Only context images are public: exports and model weights under MEDIA_ROOT are not
    # (exports download through the admin and the API, researchers only).
    urlpatterns += [re_path(r"^media/(?P<path>contexts/.*)$", serve_context_image)]

# Failure pages that need no database: a 503 that retries itself during a database
# outage, the site's 500 page otherwise (morale/errors.py).
handler500 = "morale.errors.server_error"

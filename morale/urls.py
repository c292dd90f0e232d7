from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.static import serve

from annotation import views as annotation_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", annotation_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("annotation.urls")),
]

if settings.MORALE_SERVE_MEDIA:
    # Embedded default and tests; production serves context images from the web server.
    # Only context images are public: exports and model weights under MEDIA_ROOT are not
    # (exports download through the admin, staff only).
    urlpatterns += [
        re_path(r"^media/(?P<path>contexts/.*)$", serve, {"document_root": settings.MEDIA_ROOT}),
    ]

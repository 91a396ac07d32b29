from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from domains import metrics

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="domains:list", permanent=False)),
    path("accounts/", include("accounts.urls")),
    path("", include("domains.urls")),
    path("", include("audit.urls")),
    path("", include("consoles.urls")),
    path("", include("networks.urls")),
    path("", include("storage.urls")),
    path("", include("people.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("api.urls")),
    # For Prometheus: a bearer token, no session (domains/metrics.py).
    path("metrics", metrics.scrape, name="metrics"),
]

# Inside the site's layout, with its navigation (vmportal/errors.py); used when DEBUG is off.
handler403 = "vmportal.errors.permission_denied"
handler404 = "vmportal.errors.page_not_found"
handler500 = "vmportal.errors.server_error"

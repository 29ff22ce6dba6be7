"""Root URLs: the admin, the REST API (no trailing slashes), its schema and docs."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("v0/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("v0/docs", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("catalog.api.urls")),
    path("", include("metering.api.urls")),
    path("", include("wallets.api.urls")),
    path("", include("invoicing.api.urls")),
]

# JSON error bodies for /v0/ requests that never reach a DRF view (catalog/api/errors.py).
handler400 = "catalog.api.errors.bad_request"
handler404 = "catalog.api.errors.not_found"
handler500 = "catalog.api.errors.server_error"

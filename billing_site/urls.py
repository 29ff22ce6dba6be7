"""Root URLs: the REST API (billing_site/api_urls.py; no trailing slashes), the admin, the API's schema and docs;
and the admin's branding."""

from django.apps import apps
from django.contrib import admin
from django.urls import include, path, reverse_lazy
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from billing_site.ops import health
from billing_site.ops.metrics import metrics_view

# The admin is the product's only UI: "Meterline" in its header and title, and its "View site" link goes to
# the billing home (reporting's page, which is the admin index), as does the root URL below.
admin.site.site_header = "Meterline"
admin.site.site_title = "Meterline"
admin.site.index_title = "Billing back office"
admin.site.site_url = reverse_lazy("admin:index")

urlpatterns = [
    # The bearer-key API first (billing_site/api_urls.py: also what ApiRouteMiddleware serves from,
    # without the admin's middleware); the event endpoints lead it, as they take nearly every request.
    path("", include("billing_site.api_urls")),
    # Probes and metrics: no API key, no login (billing_site/ops/; README, "Health, metrics and logs").
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("metrics", metrics_view, name="prometheus-metrics"),
    path("admin/", admin.site.urls),
    # An invoice or credit note opened from its e-mail's link by the customer (no login; signed link).
    path("documents/", include("invoicing.public_urls")),
    path("v0/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("v0/docs", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # The merchant's webhook portal: pages reached by the signed link of GET /v0/webhooks/portal.
    path("webhooks/portal/", include("wallets.portal_urls")),
    # Payment providers' webhooks (payments/webhooks/): no API key, no login, no CSRF; the provider's signature.
    path("webhooks/", include("payments.webhooks.urls")),
    # Last, so API requests never try them. The API has no trailing slashes; a browser's "/v0/docs/" is sent
    # to the real address (permanent: it never changes) instead of the API's JSON 404.
    path("v0/schema/", RedirectView.as_view(pattern_name="api-schema", permanent=True, query_string=True)),
    path("v0/docs/", RedirectView.as_view(pattern_name="api-docs", permanent=True, query_string=True)),
    # The root has no page of its own: it opens the billing home (temporary: the target may change).
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
]

if apps.is_installed("anymail"):
    # django-anymail's tracking webhooks, when it is the e-mail backend: bounces reach the delivery log.
    urlpatterns.insert(0, path("anymail/", include("anymail.urls")))

# JSON error bodies for API (/v0/, /v1/, /v2/) requests that never reach a DRF view (core/api/errors.py).
handler400 = "core.api.errors.bad_request"
handler404 = "core.api.errors.not_found"
handler500 = "core.api.errors.server_error"

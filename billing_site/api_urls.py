"""The bearer-key REST API's routes: the URLconf the API path serves from (``settings.API_URLCONF``).

``core.api.middleware.ApiRouteMiddleware`` resolves API paths against this table only and runs the view
without the admin's middleware (sessions, CSRF, auth, messages, clickjacking, admin history); the root
URLconf includes it first, so ``reverse()`` and every other caller see the same routes. The event
endpoints come first: they take nearly every request.
"""

from django.urls import include, path

from invoicing.api import events as realtime_events
from invoicing.api import grants as grant_purchases
from payments.api import checkout as payments_checkout
from payments.api import refunds as card_refunds

urlpatterns = [
    # Real-time billing: the event endpoints ingest through invoicing (ingest + prepaid debit in one
    # transaction), routed before metering's include, which keeps its own views for the same paths.
    path("v0/events", realtime_events.RealtimeEventIngestApi.as_view(), name="realtime-event-ingest"),
    path("v0/events/batch", realtime_events.RealtimeEventBatchIngestApi.as_view(), name="realtime-event-batch-ingest"),
    path("", include("catalog.api.urls")),
    path(
        "v0/customers/<str:customer_id>/usageCost",
        realtime_events.CustomerUsageCostApi.as_view(),
        name="customer-usage-cost",
    ),
    path("", include("metering.api.urls")),
    # Buying a grant records an invoice (invoicing); routed before wallets' grants/<grantId>.
    path(
        "v1/entitlements/<str:entitlement_id>/grants/purchase",
        grant_purchases.GrantPurchaseApi.as_view(),
        name="entitlement-grant-purchase",
    ),
    path("", include("wallets.api.urls")),
    # hosted_link payments open a Stripe Checkout Session (payments); routed before invoicing's view of the
    # same path, which this one extends (out_of_band stays invoicing's).
    path(
        "v2/invoices/<str:id>/payment",
        payments_checkout.InvoicePaymentApi.as_view(),
        name="invoice-record-payment-hosted",
    ),
    # Refunds give card payments back through the provider (payments); routed before invoicing's views for
    # the same paths, which they subclass (same wire, payments' services).
    path(
        "v2/invoices/<str:id>/refunds", card_refunds.InvoiceRefundCollectionApi.as_view(), name="invoice-card-refunds"
    ),
    path(
        "v2/invoices/<str:id>/refunds/<str:refund_id>/void",
        card_refunds.InvoiceRefundVoidApi.as_view(),
        name="invoice-card-refund-void",
    ),
    path("", include("invoicing.api.urls")),
    path("", include("payments.api.urls")),
    path("", include("costs.api.urls")),
]

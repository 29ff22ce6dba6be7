"""Billing routes: subscriptions and test clocks under /v0, invoices under /v2 (no trailing slash)."""

from django.urls import path

from . import (
    adjustments,
    intervals,
    invoices,
    ledger,
    one_off,
    projections,
    purchases,
    refunds,
    spend,
    subscriptions,
    test_clocks,
)

urlpatterns = [
    # Spend alerts and caps (Meterline extension, invoicing/SPEND.md).
    path("v0/customers/<str:id>/spendAlerts", spend.SpendAlertCollectionApi.as_view(), name="spend-alerts"),
    path("v0/customers/<str:id>/spendAlerts/<str:alertId>", spend.SpendAlertDetailApi.as_view(), name="spend-alert"),
    path(
        "v0/customers/<str:id>/spendAlerts/<str:alertId>/firings",
        spend.SpendAlertFiringsApi.as_view(),
        name="spend-alert-firings",
    ),
    path("v0/customers/<str:id>/spendCap", spend.SpendCapApi.as_view(), name="spend-cap"),
    path("v0/customers/<str:id>/spendCap/lift", spend.SpendCapLiftApi.as_view(), name="spend-cap-lift"),
    path("v0/subscriptions", subscriptions.SubscriptionCollectionApi.as_view(), name="subscriptions"),
    path("v0/subscriptions/<str:id>", subscriptions.SubscriptionDetailApi.as_view(), name="subscription"),
    path(
        "v0/subscriptions/<str:id>/adjustments",
        adjustments.SubscriptionAdjustmentsApi.as_view(),
        name="subscription-adjustments",
    ),
    path(
        "v0/subscriptions/<str:id>/adjustments/<str:adjustmentId>",
        adjustments.SubscriptionAdjustmentApi.as_view(),
        name="subscription-adjustment",
    ),
    path(
        "v0/subscriptions/<str:id>/intervals",
        intervals.SubscriptionIntervalsApi.as_view(),
        name="subscription-intervals",
    ),
    path(
        "v0/subscriptions/<str:id>/intervalChanges",
        intervals.SubscriptionIntervalChangesApi.as_view(),
        name="subscription-interval-changes",
    ),
    path("v0/intervalChanges", intervals.IntervalChangesApi.as_view(), name="interval-changes"),
    path(
        "v0/subscriptions/<str:id>/termination",
        subscriptions.SubscriptionTerminationApi.as_view(),
        name="subscription-termination",
    ),
    path(
        "v0/subscriptions/<str:id>/upcomingInvoice",
        projections.UpcomingInvoiceApi.as_view(),
        name="subscription-upcoming-invoice",
    ),
    path(
        "v0/subscriptions/<str:id>/versionMigration",
        subscriptions.SubscriptionVersionMigrationApi.as_view(),
        name="subscription-version-migration",
    ),
    path("v0/customers/<str:customer_id>/topUps", purchases.CustomerTopUpApi.as_view(), name="customer-top-ups"),
    path(
        "v0/customers/<str:customer_id>/reservedCapacity",
        purchases.CustomerReservedCapacityApi.as_view(),
        name="customer-reserved-capacity",
    ),
    path("v0/testClocks", test_clocks.TestClockCollectionApi.as_view(), name="test-clocks"),
    path("v0/testClocks/<str:id>", test_clocks.TestClockDetailApi.as_view(), name="test-clock"),
    path("v2/invoices", invoices.InvoiceCollectionApi.as_view(), name="invoices"),
    path("v2/invoices/oneOff", one_off.OneOffInvoiceApi.as_view(), name="invoices-one-off"),
    path("v2/invoices/projected", projections.ProjectedInvoicesApi.as_view(), name="invoices-projected"),
    path("v2/invoices/lineItems", ledger.LedgerLineItemsApi.as_view(), name="invoice-ledger-lines"),
    path("v2/invoices/<str:id>", invoices.InvoiceDetailApi.as_view(), name="invoice"),
    path("v2/invoices/<str:id>/lineItems", invoices.InvoiceLineItemsApi.as_view(), name="invoice-line-items"),
    path("v2/invoices/<str:id>/pdf", invoices.InvoicePdfApi.as_view(), name="invoice-pdf"),
    path("v2/invoices/<str:id>/payment", invoices.InvoicePaymentApi.as_view(), name="invoice-payment"),
    path("v2/invoices/<str:id>/refunds", refunds.InvoiceRefundCollectionApi.as_view(), name="invoice-refunds"),
    path(
        "v2/invoices/<str:id>/refunds/<str:refund_id>/void",
        refunds.InvoiceRefundVoidApi.as_view(),
        name="invoice-refund-void",
    ),
]

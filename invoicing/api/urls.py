"""Billing routes: subscriptions and test clocks under /v0, invoices under /v2 (no trailing slash)."""

from django.urls import path

from . import refunds, views

urlpatterns = [
    path("v0/subscriptions", views.SubscriptionCollectionApi.as_view(), name="subscriptions"),
    path("v0/subscriptions/<str:id>", views.SubscriptionDetailApi.as_view(), name="subscription"),
    path(
        "v0/subscriptions/<str:id>/termination",
        views.SubscriptionTerminationApi.as_view(),
        name="subscription-termination",
    ),
    path("v0/testClocks", views.TestClockCollectionApi.as_view(), name="test-clocks"),
    path("v0/testClocks/<str:id>", views.TestClockDetailApi.as_view(), name="test-clock"),
    path("v2/invoices", views.InvoiceCollectionApi.as_view(), name="invoices"),
    path("v2/invoices/lineItems", views.LedgerLineItemsApi.as_view(), name="invoice-ledger-lines"),
    path("v2/invoices/<str:id>", views.InvoiceDetailApi.as_view(), name="invoice"),
    path("v2/invoices/<str:id>/lineItems", views.InvoiceLineItemsApi.as_view(), name="invoice-line-items"),
    path("v2/invoices/<str:id>/pdf", views.InvoicePdfApi.as_view(), name="invoice-pdf"),
    path("v2/invoices/<str:id>/payment", views.InvoicePaymentApi.as_view(), name="invoice-payment"),
    path("v2/invoices/<str:id>/refunds", refunds.InvoiceRefundCollectionApi.as_view(), name="invoice-refunds"),
    path(
        "v2/invoices/<str:id>/refunds/<str:refund_id>/void",
        refunds.InvoiceRefundVoidApi.as_view(),
        name="invoice-refund-void",
    ),
]

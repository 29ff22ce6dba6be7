"""Payments under /v0/… and /v2/invoices/{id}/retryPayment (no trailing slashes)."""

from django.urls import path

from . import checkout, payments, views

urlpatterns = [
    path(
        "v0/merchantIntegrations",
        views.MerchantIntegrationCollectionApi.as_view(),
        name="merchant-integrations",
    ),
    path(
        "v0/merchantIntegrations/<str:id>",
        views.MerchantIntegrationDetailApi.as_view(),
        name="merchant-integration",
    ),
    path(
        "v0/merchantIntegrations/<str:id>/disconnect",
        views.MerchantIntegrationDisconnectApi.as_view(),
        name="merchant-integration-disconnect",
    ),
    path("v0/payments", payments.PaymentCollectionApi.as_view(), name="payments"),
    path("v0/payments/<str:id>", payments.PaymentDetailApi.as_view(), name="payment"),
    path(
        "v0/customers/<str:id>/paymentMethods",
        views.CustomerPaymentMethodsApi.as_view(),
        name="customer-payment-methods",
    ),
    path("v2/invoices/<str:id>/retryPayment", views.InvoiceRetryPaymentApi.as_view(), name="invoice-retry-payment"),
    path("v0/paymentSessions", checkout.PaymentSessionCollectionApi.as_view(), name="payment-sessions"),
    path("v0/paymentSessions/<str:id>", checkout.PaymentSessionDetailApi.as_view(), name="payment-session"),
]

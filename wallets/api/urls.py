"""Prepaid credit under /v0/customers/{id}/… (no trailing slashes)."""

from django.urls import path

from . import entitlements, views, webhooks

urlpatterns = [
    path("v0/webhooks", webhooks.WebhooksApi.as_view(), name="webhooks"),
    path("v0/webhooks/portal", webhooks.WebhookPortalApi.as_view(), name="webhook-portal"),
    path("v0/customers/<str:customer_id>/balance", views.CustomerBalanceApi.as_view(), name="customer-balance"),
    path("v0/customers/<str:customer_id>/ledger", views.CustomerLedgerApi.as_view(), name="customer-ledger"),
    path("v0/customers/<str:customer_id>/grants", views.CustomerGrantApi.as_view(), name="customer-grants"),
    path(
        "v0/customers/<str:id>/commitments",
        views.CustomerCommitmentsApi.as_view(),
        name="customer-commitments",
    ),
    path("v0/commitments/<str:id>", views.CommitmentDetailApi.as_view(), name="commitment"),
    path("v1/entitlements", entitlements.EntitlementCollectionApi.as_view(), name="entitlements"),
    path("v1/entitlements/<str:entitlement_id>", entitlements.EntitlementDetailApi.as_view(), name="entitlement"),
    path(
        "v1/entitlements/<str:entitlement_id>/grants",
        entitlements.GrantCollectionApi.as_view(),
        name="entitlement-grants",
    ),
    path(
        "v1/entitlements/<str:entitlement_id>/grants/<str:grant_id>",
        entitlements.GrantDetailApi.as_view(),
        name="entitlement-grant",
    ),
]

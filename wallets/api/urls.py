"""Prepaid credit under /v0/customers/{id}/… (no trailing slashes)."""

from django.urls import path

from . import views

urlpatterns = [
    path("v0/customers/<str:customer_id>/balance", views.CustomerBalanceApi.as_view(), name="customer-balance"),
    path("v0/customers/<str:customer_id>/ledger", views.CustomerLedgerApi.as_view(), name="customer-ledger"),
    path("v0/customers/<str:customer_id>/grants", views.CustomerGrantApi.as_view(), name="customer-grants"),
    path("v0/customers/<str:customer_id>/topUps", views.CustomerTopUpApi.as_view(), name="customer-top-ups"),
]

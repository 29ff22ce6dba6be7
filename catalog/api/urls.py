"""Catalog resources under /v0 (products, billable metrics, fees, prices, plans, customers, …)."""

urlpatterns: list = []

"""Costs and margin under /v0 (no trailing slash: the Paygentic client never sends one)."""

from django.urls import path

from . import revenue, views

urlpatterns = [
    path("v0/costs", views.CostCollectionApi.as_view(), name="costs"),
    path("v0/costs/report", views.CostReportApi.as_view(), name="cost-report"),
    path("v0/costs/<str:id>", views.CostDetailApi.as_view(), name="cost"),
    path("v0/costs/<str:id>/summary", views.CostSummaryApi.as_view(), name="cost-summary"),
    path("v0/profitability", views.ProfitabilityApi.as_view(), name="profitability"),
    path("v0/revenue", revenue.RevenueApi.as_view(), name="revenue"),
    path("v0/revenue/accounts", revenue.RevenueAccountsApi.as_view(), name="revenue-accounts"),
    path("v0/revenue/recurring", revenue.RecurringRevenueApi.as_view(), name="revenue-recurring"),
]

"""Catalog resources under /v0 (no trailing slash: the Paygentic client never sends one)."""

from django.urls import path

from . import features, views

urlpatterns = [
    path("v0/products", views.ProductCollectionApi.as_view(), name="products"),
    path("v0/products/<str:id>", views.ProductDetailApi.as_view(), name="product"),
    path("v0/billableMetrics", views.BillableMetricCollectionApi.as_view(), name="billable-metrics"),
    path("v0/billableMetrics/<str:id>", views.BillableMetricDetailApi.as_view(), name="billable-metric"),
    path("v0/fees", views.FeeCollectionApi.as_view(), name="fees"),
    path("v0/fees/<str:id>", views.FeeDetailApi.as_view(), name="fee"),
    path("v0/prices", views.PriceCollectionApi.as_view(), name="prices"),
    path("v0/prices/<str:id>", views.PriceDetailApi.as_view(), name="price"),
    path("v0/plans", views.PlanCollectionApi.as_view(), name="plans"),
    path("v0/plans/available", views.PlanAvailableApi.as_view(), name="plans-available"),
    path("v0/plans/<str:id>", views.PlanDetailApi.as_view(), name="plan"),
    path("v0/plans/<str:id>/versions", views.PlanVersionCollectionApi.as_view(), name="plan-versions"),
    path(
        "v0/plans/<str:id>/versions/<int:version_number>",
        views.PlanVersionDetailApi.as_view(),
        name="plan-version",
    ),
    path("v0/customers", views.CustomerCollectionApi.as_view(), name="customers"),
    path("v0/customers/<str:id>", views.CustomerDetailApi.as_view(), name="customer"),
    path("v0/features", features.FeatureCollectionApi.as_view(), name="features"),
    path("v0/features/<str:id>", features.FeatureDetailApi.as_view(), name="feature"),
]

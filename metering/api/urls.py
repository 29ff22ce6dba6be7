"""Usage routes (no trailing slash, like every /v0 route)."""

from django.urls import path

from . import views

urlpatterns = [
    path("v0/events", views.EventIngestApi.as_view(), name="event-ingest"),
    path("v0/events/batch", views.EventBatchIngestApi.as_view(), name="event-batch-ingest"),
    path("v0/billableMetrics/<str:metric_id>/meter", views.MeterApi.as_view(), name="billable-metric-meter"),
    path("v0/billableMetrics/<str:metric_id>/events", views.MetricEventsApi.as_view(), name="billable-metric-events"),
]

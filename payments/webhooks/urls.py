"""Provider webhooks under /webhooks/ (included by billing_site/urls.py; not the bearer-key API)."""

from django.urls import path

from . import views

urlpatterns = [
    path("stripe/<str:integration_id>", views.stripe_webhook, name="payments-stripe-webhook"),
]

"""The webhook portal's pages under /webhooks/portal/<token>/ (wallets/portal.py)."""

from django.urls import path

from . import portal

urlpatterns = [
    path("<str:token>/", portal.portal_home, name="webhook-portal-home"),
    path("<str:token>/endpoints/<str:endpoint_id>/", portal.portal_endpoint, name="webhook-portal-endpoint"),
    path(
        "<str:token>/deliveries/<str:delivery_id>/replay",
        portal.portal_delivery_replay,
        name="webhook-portal-delivery-replay",
    ),
]

"""The customer's pay pages (no login; signed links): included by billing_site.urls under pay/."""

from django.urls import path

from . import public_views

urlpatterns = [
    path("invoice/<str:token>", public_views.invoice_pay, name="invoice-pay"),
    path("return/<str:token>", public_views.checkout_return, name="checkout-return"),
]

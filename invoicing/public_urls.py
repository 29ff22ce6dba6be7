"""The customer's document pages (no login; a signed link): included by billing_site.urls under documents/."""

from django.urls import path

from . import public_views

urlpatterns = [
    path("<str:token>", public_views.document_public, name="document-public"),
    path("<str:token>/pdf", public_views.document_public_pdf, name="document-public-pdf"),
]

"""Factories for the wallets tests (catalog factories come from tests.factories)."""

from __future__ import annotations

import factory

from tests.factories import CustomerFactory  # noqa: F401  (re-exported for the wallets tests)
from wallets import models


class WebhookEndpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.WebhookEndpoint

    merchant = factory.SubFactory("tests.factories.MerchantFactory")
    url = "http://127.0.0.1:9/hook"
    secret = factory.LazyFunction(models.webhook_secret_new)
    enabled = True
    event_types = factory.LazyFunction(list)

"""The local Stripe server (tests/stripe_server.py), started per test, with the Stripe library pointed at it."""

from __future__ import annotations

import pytest

from tests.invoicing.conftest import smtp  # noqa: F401 (the real SMTP server fixture, for the charge e-mails)
from tests.stripe_server import StripeTestServer


@pytest.fixture
def stripe_server(settings):
    server = StripeTestServer().start()
    settings.STRIPE_API_BASE = server.url
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    yield server
    server.stop()


SECRET_KEY = "sk_test_meterline_0123456789"


@pytest.fixture
def now():
    from datetime import UTC, datetime

    return datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def stripe_connected(merchant, stripe_server, now):
    """The merchant's Stripe integration in test mode, against the local server."""
    from payments.services import integration_upsert

    return integration_upsert(
        merchant=merchant, provider="stripe", now=now, secret_key=SECRET_KEY, webhook_secret="whsec_test_0123456789"
    )

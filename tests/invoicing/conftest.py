from __future__ import annotations

import pytest

from tests.factories import MerchantFactory
from tests.invoicing.smtp_server import SmtpServer


@pytest.fixture
def seller(db):
    """A merchant billing in whole cents, rounding half up, with a 24 h grace period."""
    return MerchantFactory(name="Neural Labs", invoice_number_prefix="NLE")


@pytest.fixture
def smtp(settings):
    """A real SMTP server on 127.0.0.1 and Django's SMTP backend pointed at it (plain, no TLS: loopback)."""
    server = SmtpServer().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5
    settings.METERLINE_PUBLIC_URL = "https://billing.neural.example"
    yield server
    server.stop()

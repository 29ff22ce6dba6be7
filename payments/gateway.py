"""The adapter of a merchant's integration: decrypts its secrets and builds the provider's client. The only
place where a stored secret is read back."""

from __future__ import annotations

from .credentials import credential_decrypt
from .models import IntegrationStatus, MerchantIntegration, Provider
from .providers import PaymentProvider
from .providers.stripe_provider import StripeProvider


def integration_provider(integration: MerchantIntegration) -> PaymentProvider:
    if integration.status != IntegrationStatus.ACTIVE:
        raise ValueError(f"integration {integration.pk} is {integration.status}, not active")
    if integration.provider == Provider.STRIPE:
        return StripeProvider(
            secret_key=credential_decrypt(integration.secret_key_encrypted),
            webhook_secret=(
                credential_decrypt(integration.webhook_secret_encrypted) if integration.webhook_secret_encrypted else ""
            ),
        )
    raise ValueError(f"no adapter for provider {integration.provider!r}")

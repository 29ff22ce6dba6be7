"""Writes of the payments app: provider credentials, the provider's customers, saved payment methods and
hosted sessions.

A provider call is never made inside a transaction (no row lock is held across the network): the services
call the provider first, with an idempotency key derived from our own ids, then record the answer in one
short transaction guarded by a unique constraint. A retry, a second worker or a crash between the two steps
ends with one object at the provider (same key, same answer) and one row here (the constraint)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.views.decorators.debug import sensitive_variables

from catalog.models import Customer, Merchant
from core.ids import new_public_id

from . import selectors
from .credentials import credential_encrypt, credential_hint
from .errors import PaymentsNotConnected
from .gateway import integration_provider
from .models import (
    IntegrationStatus,
    MerchantIntegration,
    PaymentMethod,
    PaymentSession,
    PaymentSessionMode,
    PaymentSessionStatus,
    Provider,
    ProviderCustomer,
    ProviderMode,
)
from .providers import SavedPaymentMethod

SECRET_KEY_PREFIXES = {"sk_test_": ProviderMode.TEST, "rk_test_": ProviderMode.TEST}
SECRET_KEY_PREFIXES |= {"sk_live_": ProviderMode.LIVE, "rk_live_": ProviderMode.LIVE}
# Stripe Checkout Sessions live between 30 minutes and 24 hours; the client allows links of up to 30 days.
SESSION_MIN_LIFETIME = timedelta(minutes=30)
SESSION_MAX_LIFETIME = timedelta(hours=24)
SESSION_MAX_REQUESTED = timedelta(days=30)


def _key_mode(secret_key: str) -> ProviderMode:
    for prefix, mode in SECRET_KEY_PREFIXES.items():
        if secret_key.startswith(prefix) and len(secret_key) > len(prefix) + 8:
            return mode
    raise ValidationError(
        {
            "secret_key": "A Stripe secret key starts with sk_test_, sk_live_, rk_test_ or rk_live_ "
            "(Dashboard → Developers → API keys)."
        }
    )


def integration_credentials_check(
    *,
    secret_key: str | None,
    webhook_secret: str | None,
    publishable_key: str | None,
    stored_mode: str = ProviderMode.TEST,
) -> ProviderMode:
    """Refuse (``ValidationError`` per field) what is not a Stripe credential; returns the key's mode.
    ``integration_upsert`` runs it; the admin's form runs it too, to show the errors beside the fields."""
    errors: dict[str, str] = {}
    mode = ProviderMode(stored_mode)
    if secret_key is not None:
        try:
            mode = _key_mode(secret_key)
        except ValidationError as error:
            errors.update({field: messages[0] for field, messages in error.message_dict.items()})
    if webhook_secret and not webhook_secret.startswith("whsec_"):
        errors["webhook_secret"] = "A Stripe webhook signing secret starts with whsec_."
    if publishable_key:
        if not publishable_key.startswith(("pk_test_", "pk_live_")):
            errors["publishable_key"] = "A Stripe publishable key starts with pk_test_ or pk_live_."
        elif not errors and not publishable_key.startswith(f"pk_{mode}_"):
            errors["publishable_key"] = f"The publishable key is not of the secret key's mode ({mode})."
    if errors:
        raise ValidationError(errors)
    return mode


@sensitive_variables("secret_key", "webhook_secret")
@transaction.atomic
def integration_upsert(
    *,
    merchant: Merchant,
    provider: str,
    now: datetime,
    secret_key: str | None = None,
    webhook_secret: str | None = None,
    publishable_key: str | None = None,
    external_id: str | None = None,
    status: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> MerchantIntegration:
    """Connect a payment provider, or change the connection (the client's ``upsertMerchantIntegration``).

    What is not given is kept; a secret given replaces the stored one and is encrypted before it is saved.
    ``status`` is ``active`` (the default: connecting again after a disconnect) or ``disconnected``
    (as ``integration_disconnect``). Connecting needs a secret key, stored or given."""
    if provider not in Provider.values:
        raise ValidationError(
            {"provider": f"Only {', '.join(Provider.values)} can be connected as a payment provider."}
        )
    if status not in (None, IntegrationStatus.ACTIVE, IntegrationStatus.DISCONNECTED):
        raise ValidationError({"status": "Set status to active or disconnected; error is set by Meterline."})
    integration = MerchantIntegration.objects.select_for_update().filter(merchant=merchant, provider=provider).first()
    if integration is None:
        integration = MerchantIntegration(
            merchant=merchant,
            provider=provider,
            status=IntegrationStatus.DISCONNECTED,
            connected_at=now,
            created_at=now,
        )
    mode = integration_credentials_check(
        secret_key=secret_key,
        webhook_secret=webhook_secret,
        publishable_key=publishable_key,
        stored_mode=integration.mode,
    )
    if secret_key is not None:
        integration.secret_key_encrypted = credential_encrypt(secret_key)
        integration.secret_key_hint = credential_hint(secret_key)
        integration.mode = mode
        if (
            publishable_key is None
            and integration.publishable_key
            and not integration.publishable_key.startswith(f"pk_{mode}_")
        ):
            integration.publishable_key = ""  # the other mode's: no longer matches
    if webhook_secret is not None:
        integration.webhook_secret_encrypted = credential_encrypt(webhook_secret) if webhook_secret else ""
        integration.webhook_secret_hint = credential_hint(webhook_secret) if webhook_secret else ""
    if publishable_key is not None:
        integration.publishable_key = publishable_key
    if external_id is not None:
        integration.external_id = external_id
    if metadata is not None:
        integration.metadata = metadata
    if status == IntegrationStatus.DISCONNECTED:
        _disconnect(integration, now=now)
    elif integration.status != IntegrationStatus.ACTIVE or secret_key is not None:
        if not integration.secret_key_encrypted:
            raise ValidationError({"secret_key": "Connecting Stripe needs its secret key."})
        if integration.status != IntegrationStatus.ACTIVE:
            integration.connected_at = now
        integration.status = IntegrationStatus.ACTIVE
        integration.disconnected_at = None
    integration.updated_at = now
    integration.full_clean(exclude=["merchant"])
    try:
        with transaction.atomic():
            integration.save()
    except IntegrityError:
        # Another request connected the same provider at the same moment: its row stands, ask again.
        raise ValidationError({"provider": "This provider was connected by another request just now; try again."})
    return integration


def _disconnect(integration: MerchantIntegration, *, now: datetime) -> None:
    # The secrets are erased, not kept for later: a disconnected merchant's keys are no longer ours to hold.
    if integration.status != IntegrationStatus.DISCONNECTED or integration.disconnected_at is None:
        integration.disconnected_at = now
    integration.status = IntegrationStatus.DISCONNECTED
    integration.secret_key_encrypted = integration.webhook_secret_encrypted = ""
    integration.secret_key_hint = integration.webhook_secret_hint = ""


@transaction.atomic
def integration_disconnect(*, integration: MerchantIntegration, now: datetime) -> MerchantIntegration:
    """Stop using the provider and erase its secrets (the client's ``disconnectMerchantIntegration``). The
    provider's customers and saved methods are kept: connecting the same account again finds them."""
    integration = MerchantIntegration.objects.select_for_update().get(pk=integration.pk)
    _disconnect(integration, now=now)
    integration.updated_at = now
    integration.save()
    return integration


def _active_integration(customer: Customer) -> MerchantIntegration:
    integration = selectors.integration_active(merchant_id=customer.merchant_id)
    if integration is None:
        raise PaymentsNotConnected()
    return integration


def provider_customer_ensure(*, customer: Customer, now: datetime) -> ProviderCustomer:
    """The provider's customer for ``customer`` in the merchant's current mode, created on first need.

    Two requests creating it at once send the same idempotency key, so the provider creates one customer
    and both record the same reference (the second insert loses to the unique constraint and reads it)."""
    integration = _active_integration(customer)
    existing = selectors.provider_customer_get(integration=integration, customer=customer)
    if existing is not None:
        return existing
    reference = integration_provider(integration).customer_create(
        customer_id=customer.pk,
        name=customer.name,
        email=customer.email,
        idempotency_key=f"meterline-customer-{integration.pk}-{integration.mode}-{customer.pk}",
    )
    try:
        with transaction.atomic():
            return ProviderCustomer.objects.create(
                integration=integration, customer=customer, mode=integration.mode, reference=reference, created_at=now
            )
    except IntegrityError:
        return ProviderCustomer.objects.get(integration=integration, customer=customer, mode=integration.mode)


def _mirror(provider_customer: ProviderCustomer, saved: SavedPaymentMethod) -> PaymentMethod:
    method, _ = PaymentMethod.objects.update_or_create(
        provider_customer=provider_customer,
        reference=saved.reference,
        defaults={
            "customer_id": provider_customer.customer_id,
            "type": saved.type,
            "brand": saved.brand,
            "last4": saved.last4,
            "exp_month": saved.exp_month,
            "exp_year": saved.exp_year,
            "detached_at": None,
        },
        create_defaults={
            "customer_id": provider_customer.customer_id,
            "type": saved.type,
            "brand": saved.brand,
            "last4": saved.last4,
            "exp_month": saved.exp_month,
            "exp_year": saved.exp_year,
            "created_at": saved.created_at,
        },
    )
    return method


def _default_when_none(provider_customer: ProviderCustomer) -> None:
    """The rule of the default: the oldest current method (of the customer, in this mode), until one is chosen."""
    current = PaymentMethod.objects.filter(provider_customer=provider_customer, detached_at__isnull=True)
    if not current.filter(is_default=True).exists():
        first = current.order_by("created_at", "id").first()
        if first is not None:
            current.filter(pk=first.pk).update(is_default=True)


def payment_method_save(*, customer: Customer, payment_method: str, now: datetime) -> PaymentMethod:
    """Save a payment method for off-session charges through a SetupIntent (``payment_method``: the
    provider's id or test token, e.g. from Stripe.js or ``pm_card_visa`` in test mode). The customer's first
    method becomes its default."""
    provider_customer = provider_customer_ensure(customer=customer, now=now)
    saved = integration_provider(provider_customer.integration).payment_method_setup(
        provider_customer=provider_customer.reference,
        payment_method=payment_method,
        idempotency_key=f"meterline-setup-{provider_customer.reference}-{payment_method}",
    )
    with transaction.atomic():
        Customer.objects.select_for_update().filter(pk=customer.pk).first()  # one writer of the default
        method = _mirror(provider_customer, saved)
        _default_when_none(provider_customer)
    method.refresh_from_db()
    return method


def payment_methods_sync(*, customer: Customer, now: datetime) -> None:
    """Bring the mirror up to the provider's list (a card saved on Stripe's hosted page appears; one removed
    there is marked detached). Without a connected provider or a provider customer there is nothing to read."""
    integration = selectors.integration_active(merchant_id=customer.merchant_id)
    if integration is None:
        return
    provider_customer = selectors.provider_customer_get(integration=integration, customer=customer)
    if provider_customer is None:
        return
    methods = integration_provider(integration).payment_methods_list(provider_customer=provider_customer.reference)
    with transaction.atomic():
        Customer.objects.select_for_update().filter(pk=customer.pk).first()
        for saved in methods:
            _mirror(provider_customer, saved)
        PaymentMethod.objects.filter(provider_customer=provider_customer, detached_at__isnull=True).exclude(
            reference__in=[saved.reference for saved in methods]
        ).update(detached_at=now, is_default=False)
        _default_when_none(provider_customer)


@transaction.atomic
def payment_method_set_default(*, payment_method: PaymentMethod) -> PaymentMethod:
    """Make ``payment_method`` the one an off-session charge of its customer uses."""
    Customer.objects.select_for_update().filter(pk=payment_method.customer_id).first()
    method = PaymentMethod.objects.get(pk=payment_method.pk)
    if method.detached_at is not None:
        raise ValidationError({"payment_method": "This payment method was removed at the provider."})
    PaymentMethod.objects.filter(provider_customer_id=method.provider_customer_id, is_default=True).exclude(
        pk=method.pk
    ).update(is_default=False)
    if not method.is_default:
        method.is_default = True
        method.save(update_fields=["is_default"])
    return method


@transaction.atomic
def payment_method_default_from_setup(*, session: PaymentSession, payment_method: str) -> PaymentMethod | None:
    """The method the customer saved on a completed setup page (``payment_method``: the provider's id, from the
    session's SetupIntent) becomes their default: they opened the page to give the card to charge from now on,
    so a declined card replaced this way is the one the next retry charges (Stripe Billing's own "update payment
    method" page does the same). None when it is not mirrored (the sync has not seen it) or was removed since."""
    session = PaymentSession.objects.get(pk=session.pk)
    if session.mode != PaymentSessionMode.SETUP or session.status != PaymentSessionStatus.COMPLETED:
        return None
    Customer.objects.select_for_update().filter(pk=session.customer_id).first()  # one writer of the default
    saved = PaymentMethod.objects.filter(
        provider_customer_id=session.provider_customer_id, reference=payment_method, detached_at__isnull=True
    ).first()
    if saved is None or saved.is_default:
        return saved
    PaymentMethod.objects.filter(provider_customer_id=saved.provider_customer_id, is_default=True).update(
        is_default=False
    )
    saved.is_default = True
    saved.save(update_fields=["is_default"])
    return saved


def payment_session_setup_create(
    *,
    customer: Customer,
    now: datetime,
    success_url: str = "",
    failure_url: str = "",
    metadata: dict[str, Any] | None = None,
    expires_at: datetime | None = None,
) -> PaymentSession:
    """A hosted page where the customer saves a payment method (the client's
    ``POST /v0/customers/{id}/paymentMethods``): a Stripe Checkout Session in setup mode.

    Stripe's sessions live at most 24 hours: a later ``expires_at`` (the client allows 30 days) is shortened
    to 24 hours, and the session's ``expires_at`` says when it really ends."""
    if expires_at is not None:
        if expires_at <= now:
            raise ValidationError({"expires_at": "The link must expire in the future."})
        if expires_at > now + SESSION_MAX_REQUESTED:
            raise ValidationError({"expires_at": "The link may expire no more than 30 days ahead."})
        if expires_at < now + SESSION_MIN_LIFETIME:
            raise ValidationError({"expires_at": "Stripe's hosted pages stay open at least 30 minutes."})
    ends = min(expires_at or now + SESSION_MAX_LIFETIME, now + SESSION_MAX_LIFETIME)
    provider_customer = provider_customer_ensure(customer=customer, now=now)
    session_id = new_public_id("ps")
    landing = settings.METERLINE_PUBLIC_URL + "/"
    hosted = integration_provider(provider_customer.integration).session_create(
        mode=PaymentSessionMode.SETUP,
        provider_customer=provider_customer.reference,
        currency=customer.currency,
        success_url=success_url or landing,
        cancel_url=failure_url or success_url or landing,
        expires_at=ends,
        idempotency_key=f"meterline-session-{session_id}",
        metadata={"meterline_session": session_id, "meterline_customer": customer.pk},
    )
    with transaction.atomic():
        return PaymentSession.objects.create(
            id=session_id,
            merchant_id=customer.merchant_id,
            customer=customer,
            provider_customer=provider_customer,
            mode=PaymentSessionMode.SETUP,
            reference=hosted.reference,
            url=hosted.url,
            success_redirect_url=success_url,
            failure_redirect_url=failure_url,
            metadata=metadata or {},
            expires_at=hosted.expires_at,
            created_at=now,
        )


@transaction.atomic
def payment_session_complete(*, session: PaymentSession, now: datetime) -> bool:
    """The customer finished the hosted page (Stripe: ``checkout.session.completed``): the session is
    completed, once. Returns whether this call completed it (False: completed, expired or cancelled already)."""
    return bool(
        PaymentSession.objects.filter(
            pk=session.pk, status__in=[PaymentSessionStatus.PENDING, PaymentSessionStatus.PROCESSING]
        ).update(status=PaymentSessionStatus.COMPLETED, completed_at=now)
    )

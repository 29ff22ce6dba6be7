"""Invoices, billing runs and wallets in given states, for the home page's figures (written directly: the
home page only reads them)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import factory

from invoicing.models import BillingRun, Invoice, InvoiceKind, InvoiceStatus
from invoicing.receivables import invoice_due_at
from tests.factories import SubscriptionFactory
from wallets.models import Wallet


class InvoiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Invoice

    subscription = factory.SubFactory(SubscriptionFactory)
    merchant = factory.SelfAttribute("subscription.merchant")
    customer = factory.SelfAttribute("subscription.customer")
    plan = factory.SelfAttribute("subscription.plan")
    kind = InvoiceKind.RECURRING
    status = InvoiceStatus.ISSUED
    currency = "USD"
    period_start = factory.Sequence(lambda n: datetime(2000 + n // 12, n % 12 + 1, 1, tzinfo=UTC))
    period_end = factory.LazyAttribute(
        lambda o: o.period_start.replace(
            year=o.period_start.year + o.period_start.month // 12, month=o.period_start.month % 12 + 1
        )
    )
    subtotal = Decimal("100.00")
    tax = Decimal("0")
    total = factory.LazyAttribute(lambda o: o.subtotal + o.tax)
    amount_due = factory.LazyAttribute(lambda o: o.total)
    # As issuing fixes it (invoicing.receivables.invoice_due_at): the issue moment + the payment term.
    due_at = factory.LazyAttribute(
        lambda o: (
            None
            if getattr(o, "issued_at", None) is None
            else invoice_due_at(issued_at=o.issued_at, payment_term_days=o.subscription.payment_term_days)
        )
    )


class BillingRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BillingRun

    as_of = datetime(2026, 3, 1, tzinfo=UTC)
    started_at = datetime(2026, 3, 1, 0, 1, tzinfo=UTC)
    trigger = "beat"


class WalletFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Wallet

    customer = factory.SubFactory("tests.factories.CustomerFactory")
    merchant = factory.SelfAttribute("customer.merchant")
    currency = "USD"
    balance = Decimal("50")
    low_balance_threshold = Decimal("100")

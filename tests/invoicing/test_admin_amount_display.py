"""The invoice and credit note pages show amounts in the invoice's currency and quantities normalized,
never the stored 4-decimal figures (49.0000) or 12-decimal quantities."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from catalog.models import PaymentTerm
from invoicing.models import CreditNote, Invoice, InvoiceKind
from invoicing.services import billing_run_execute, credit_note_issue, invoice_finalize, subscription_start
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price, metered_price, record_usage

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture
def issued(seller):
    plan = PlanFactory(merchant=seller, product__merchant=seller, name="Pro", default_tax_rate=Decimal("8.5"))
    fee_price(plan, "49.00", term=PaymentTerm.IN_ADVANCE, name="Platform fee")
    price = metered_price(plan, "0.000002", name="Input tokens")
    customer = CustomerFactory(merchant=seller, name="Acme Corp")
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    record_usage(customer, price.billable_metric, datetime(2026, 1, 9, tzinfo=UTC), 1_000_000)
    billing_run_execute(as_of=FEB_1)
    invoice = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    return invoice_finalize(invoice=invoice, now=FEB_1)


def _page(client, url: str) -> str:
    """The page's HTML with the whitespace between tags removed."""
    return re.sub(r">\s+<", "><", client.get(url).content.decode())


def test_invoice_page_shows_money_and_quantities_people_read(superuser_client, issued):
    body = _page(superuser_client, reverse("admin:invoicing_invoice_change", args=[issued.pk]))

    # lines: 1,000,000 tokens × $0.000002 = $2.00 and the $49.00 fee; tax 8.5 % of $51.00 = $4.34
    assert '<div class="readonly">$51.00</div>' in body  # subtotal
    assert '<div class="readonly">8.5 %</div>' in body  # tax rate
    assert '<div class="readonly">$4.34</div>' in body  # tax
    assert '<div class="readonly">$55.34</div>' in body  # total and amount due
    assert '<td class="field-quantity_display"><p>1,000,000</p></td>' in body
    assert '<td class="field-amount_display"><p>$2.00</p></td>' in body
    assert "49.0000" not in body
    assert "8.5000" not in body
    assert "1000000.000000000000" not in body


def test_invoice_change_list_shows_the_total_in_its_currency(superuser_client, issued):
    body = _page(superuser_client, reverse("admin:invoicing_invoice_changelist"))

    assert '<td class="field-total_display">$55.34</td>' in body


def test_credit_note_page_shows_amounts_in_its_currency(superuser_client, issued):
    credit_note_issue(invoice=issued, now=FEB_1, reason="Goodwill")
    note = CreditNote.objects.get(invoice=issued)

    body = _page(superuser_client, reverse("admin:invoicing_creditnote_change", args=[note.pk]))

    assert '<div class="readonly">$55.34</div>' in body
    assert '<td class="field-amount_display"><p>$49.00</p></td>' in body
    assert "55.3400" not in body

"""The due date is one stored fact, ``Invoice.due_at``, fixed at issue (``invoicing.receivables.invoice_due_at``;
tests/invoicing/test_receivables_overdue.py); the document, the API and the billing home read it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from invoicing.documents import invoice_context
from tests.reporting.factories import InvoiceFactory

pytestmark = pytest.mark.django_db
ISSUED = datetime(2026, 3, 15, 12, 30, 15, 123456, tzinfo=UTC)


def test_the_document_prints_the_due_date():
    invoice = InvoiceFactory(issued_at=ISSUED, subscription__payment_term_days=30, subtotal=Decimal("1"))

    meta = dict(invoice_context(invoice)["meta"])

    assert meta["Due date"] == "Apr 14, 2026"

"""The due date is one definition, ``Invoice.due_at`` (issue moment + the subscription's payment term in days),
with its SQL form ``Invoice.objects.with_due_at()`` beside it; the document, the API and the billing home read
it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from invoicing.documents import invoice_context
from invoicing.models import Invoice, InvoiceStatus
from tests.reporting.factories import InvoiceFactory

pytestmark = pytest.mark.django_db
ISSUED = datetime(2026, 3, 15, 12, 30, 15, 123456, tzinfo=UTC)


def test_the_due_date_is_the_issue_moment_plus_the_payment_term_and_sql_agrees():
    # given
    issued = InvoiceFactory(issued_at=ISSUED, subscription__payment_term_days=30)
    on_issue = InvoiceFactory(issued_at=ISSUED, subscription__payment_term_days=0)
    draft = InvoiceFactory(issued_at=None, status=InvoiceStatus.DRAFT)

    # then
    assert issued.due_at == datetime(2026, 4, 14, 12, 30, 15, 123456, tzinfo=UTC)
    assert on_issue.due_at == ISSUED
    assert draft.due_at is None
    due_before = Invoice.objects.with_due_at().filter(due_at__lt=ISSUED + timedelta(days=30))
    assert set(due_before) == {on_issue}
    assert list(Invoice.objects.with_due_at().filter(due_at=issued.due_at)) == [issued]


def test_the_document_prints_the_due_date():
    invoice = InvoiceFactory(issued_at=ISSUED, subscription__payment_term_days=30, subtotal=Decimal("1"))

    meta = dict(invoice_context(invoice)["meta"])

    assert meta["Due date"] == "Apr 14, 2026"

"""The AR aging report: buckets by whole days past due, per currency, with customer credit; CSV; admin page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from catalog.models import StaffMerchantAccess
from invoicing.models import CustomerCreditEntry, CustomerCreditKind, InvoiceStatus
from invoicing.receivables import payment_record
from reporting.aging import receivables_aging, receivables_aging_csv
from tests.factories import CustomerFactory, MerchantFactory, SubscriptionFactory
from tests.invoicing.receivables import account, issued
from tests.reporting.factories import InvoiceFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _open(subscription, amount: str, *, days_past_due: float, currency="USD", status=InvoiceStatus.ISSUED, **extra):
    due = NOW - timedelta(days=days_past_due)
    return InvoiceFactory(
        subscription=subscription,
        currency=currency,
        status=status,
        subtotal=Decimal(amount),
        issued_at=due - timedelta(days=14),
        due_at=due,
        **extra,
    )


def _buckets(row) -> dict[str, str]:
    return {key: str(value) for key, value in row.buckets.items()}


@pytest.fixture
def subscription():
    return SubscriptionFactory(customer__name="Acme")


def test_each_amount_falls_in_the_bucket_of_its_whole_days_past_due(subscription):
    _open(subscription, "1.00", days_past_due=-3)  # due in 3 days
    _open(subscription, "2.00", days_past_due=0)  # due this very moment: not late yet
    _open(subscription, "4.00", days_past_due=1 / 24)  # one hour late
    _open(subscription, "8.00", days_past_due=30)  # exactly 30 days
    _open(subscription, "16.00", days_past_due=30.9)  # 30 whole days and some hours
    _open(subscription, "32.00", days_past_due=31)  # exactly 31 days
    _open(subscription, "64.00", days_past_due=60.5)
    _open(subscription, "128.00", days_past_due=61)
    _open(subscription, "256.00", days_past_due=90.99)
    _open(subscription, "512.00", days_past_due=91)
    _open(subscription, "1024.00", days_past_due=400)

    (usd,) = receivables_aging(now=NOW)

    (row,) = usd.rows
    assert _buckets(row) == {
        "current": "3.00",
        "days_1_30": "28.00",
        "days_31_60": "96.00",
        "days_61_90": "384.00",
        "over_90": "1536.00",
    }
    assert row.total == Decimal("2047.00")


def test_partial_payments_count_paid_and_void_invoices_do_not():
    merchant = MerchantFactory()
    subscription = account(merchant, payment_term_days=14)
    jan = datetime(2026, 1, 1, tzinfo=UTC)
    partly = issued(subscription, "100.00", now=jan)  # due Jan 15
    paid = issued(subscription, "40.00", now=jan, day=1)
    void = issued(subscription, "70.00", now=jan, day=2)
    payment_record(
        customer=subscription.customer,
        currency="USD",
        amount=Decimal("30.00"),
        method="bank_transfer",
        received_at=jan,
        now=jan,
        invoice_ids=[partly.pk],
    )
    payment_record(
        customer=subscription.customer,
        currency="USD",
        amount=Decimal("40.00"),
        method="bank_transfer",
        received_at=jan,
        now=jan,
        invoice_ids=[paid.pk],
    )
    void.status = InvoiceStatus.VOID
    void.save(update_fields=["status"])

    (usd,) = receivables_aging(now=datetime(2026, 2, 1, tzinfo=UTC))  # 17 days after Jan 15

    (row,) = usd.rows
    assert _buckets(row) == {
        "current": "0.00",
        "days_1_30": "70.00",
        "days_31_60": "0.00",
        "days_61_90": "0.00",
        "over_90": "0.00",
    }


def test_currencies_are_reported_apart_with_totals_and_credit_reduces_the_net(subscription):
    other = SubscriptionFactory(customer__name="Zed", merchant=subscription.merchant, plan=subscription.plan)
    _open(subscription, "10.00", days_past_due=5)
    _open(other, "20.00", days_past_due=45)
    _open(subscription, "7.50", days_past_due=100, currency="EUR")
    CustomerCreditEntry.objects.create(
        merchant=subscription.merchant,
        customer=other.customer,
        currency="USD",
        amount=Decimal("3.25"),
        kind=CustomerCreditKind.OVERPAYMENT,
        description="overpaid",
        created_at=NOW,
    )
    credit_only = CustomerFactory(merchant=subscription.merchant, name="Credit Only")
    CustomerCreditEntry.objects.create(
        merchant=subscription.merchant,
        customer=credit_only,
        currency="USD",
        amount=Decimal("5.00"),
        kind=CustomerCreditKind.OVERPAYMENT,
        description="overpaid",
        created_at=NOW,
    )

    eur, usd = receivables_aging(now=NOW)

    assert [eur.currency, usd.currency] == ["EUR", "USD"]
    assert [(r.customer_name, str(r.total), str(r.credit), str(r.net)) for r in usd.rows] == [
        ("Acme", "10.00", "0.00", "10.00"),
        ("Credit Only", "0.00", "5.00", "-5.00"),
        ("Zed", "20.00", "3.25", "16.75"),
    ]
    assert (str(usd.totals.total), str(usd.totals.credit), str(usd.totals.net)) == ("30.00", "8.25", "21.75")
    assert _buckets(eur.totals)["over_90"] == "7.50"


def test_csv_has_decimal_strings_and_a_total_row_per_currency(subscription):
    _open(subscription, "1234.50", days_past_due=10)
    _open(subscription, "0.10", days_past_due=-1, currency="EUR")

    text = receivables_aging_csv(receivables_aging(now=NOW))

    cid = subscription.customer_id
    assert text == (
        "currency,customer_id,customer,current,days_1_30,days_31_60,days_61_90,over_90,total,customer_credit,"
        "net_receivable\n"
        f"EUR,{cid},Acme,0.10,0.00,0.00,0.00,0.00,0.10,0.00,0.10\n"
        "EUR,,Total,0.10,0.00,0.00,0.00,0.00,0.10,0.00,0.10\n"
        f"USD,{cid},Acme,0.00,1234.50,0.00,0.00,0.00,1234.50,0.00,1234.50\n"
        "USD,,Total,0.00,1234.50,0.00,0.00,0.00,1234.50,0.00,1234.50\n"
    )


def test_aging_is_one_query_for_invoices_and_one_for_credit(subscription, django_assert_num_queries):
    for days in (1, 40, 70, 200):
        _open(subscription, "1.00", days_past_due=days)
        _open(SubscriptionFactory(), "1.00", days_past_due=days, currency="EUR")
    with django_assert_num_queries(2):
        receivables_aging(now=NOW)


def test_staff_bound_to_a_merchant_never_sees_another_merchants_receivables(billing_viewer, subscription):
    other = SubscriptionFactory(customer__name="Other Merchant's Customer")
    _open(subscription, "10.00", days_past_due=5)
    _open(other, "99.00", days_past_due=5)
    StaffMerchantAccess.objects.create(user=billing_viewer, merchant=subscription.merchant)
    client = Client()
    client.force_login(billing_viewer)

    page = client.get(reverse("admin:invoicing_invoice_aging"))
    export = client.get(reverse("admin:invoicing_invoice_aging_export"))

    assert page.status_code == 200 and export.status_code == 200
    assert "Acme" in page.content.decode() and "Other Merchant" not in page.content.decode()
    assert "Acme" in export.content.decode() and "99.00" not in export.content.decode()
    assert [r.customer_name for r in receivables_aging(now=NOW, merchant_ids={subscription.merchant_id})[0].rows] == [
        "Acme"
    ]


def test_a_viewer_reads_the_pages_and_a_post_changes_nothing(billing_viewer, subscription):
    _open(subscription, "10.00", days_past_due=5)
    client = Client()
    client.force_login(billing_viewer)

    page = client.get(reverse("admin:invoicing_invoice_aging"))
    export = client.get(reverse("admin:invoicing_invoice_aging_export"))

    assert page.status_code == 200
    assert '<td class="numeric">$10.00</td>' in page.content.decode()  # in its currency, as the admin shows money
    assert export["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        export["Content-Disposition"]
        == 'attachment; filename="receivables-aging-' + f'{datetime.now(UTC):%Y-%m-%d}.csv"'
    )
    assert client.post(reverse("admin:invoicing_invoice_aging")).status_code == 405
    assert client.post(reverse("admin:invoicing_invoice_aging_export")).status_code == 405


def test_staff_who_may_not_view_invoices_is_refused(staff_without_roles):
    client = Client()
    client.force_login(staff_without_roles)

    assert client.get(reverse("admin:invoicing_invoice_aging")).status_code == 403
    assert client.get(reverse("admin:invoicing_invoice_aging_export")).status_code == 403


def test_the_billing_home_and_the_invoice_list_link_the_aging_report_for_who_may_view_invoices(
    billing_viewer, staff_without_roles
):
    viewer, plain = Client(), Client()
    viewer.force_login(billing_viewer)
    plain.force_login(staff_without_roles)
    url = reverse("admin:invoicing_invoice_aging")

    assert f'href="{url}"' in viewer.get(reverse("admin:index")).content.decode()
    assert f'href="{url}"' not in plain.get(reverse("admin:index")).content.decode()
    # and the invoice list's toolbar (a page only who may view invoices reaches)
    assert f'href="{url}"' in viewer.get(reverse("admin:invoicing_invoice_changelist")).content.decode()

"""Order to cash in a real browser: a "Billing admin" (finance) records a partial payment on an issued invoice,
pays the rest, issues a partial credit note on the paid invoice settled as customer credit, sees the credit
applied to the customer's next invoice as its own line, and reads the AR aging report and its CSV.

Hand-computed amounts (a $1,250.00 monthly platform fee billed in arrears, tax 10 %, no usage):

- each month's invoice: $1,250.00 + $125.00 tax = **$1,375.00**;
- a payment of $500.00 leaves **$875.00** due (partially paid); a second one of $875.00 pays it;
- a credit note of $200.00 on the fee line + $20.00 tax = **$220.00**, all of it customer credit (nothing was
  due any more);
- the next month's invoice: $1,375.00 total, "Applied credit balance" −$220.00, **$1,155.00** due; the
  credit balance is then spent.

The aging report, beside that $1,155.00 not yet due (current), holds another customer's invoices issued in
the past with 14-day terms ($300.00 16 days past due; $640.00 45 days past due less a $140.00 payment;
$75.50 over 90 days past due) and a third customer's $50.00 overpayment (customer credit only).

With ``METERLINE_README_SCREENSHOTS=1`` the journey also saves the README's receivables screenshots in
docs/screenshots/ (1280 px wide).
"""

from __future__ import annotations

import csv
import io
import os
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone

from catalog.models import Merchant, PaymentTerm
from catalog.roles import BILLING_ADMIN
from invoicing.models import Invoice, InvoiceStatus, PaymentMethod
from invoicing.receivables import payment_record
from invoicing.services import invoice_finalize, subscription_start
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price
from tests.invoicing.receivables import account, issued

from .admin_pages import admin_url, log_in, staff_user_with_role

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

README_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _month_start(moment: datetime, months_back: int) -> datetime:
    start = moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for _ in range(months_back):
        start = (start - timedelta(days=1)).replace(day=1)
    return start


# Sections of the invoice and credit note pages that a README excerpt leaves out (the test reads them all).
README_HIDDEN_HEADINGS = ("Parties", "Period and dates", "Related")
README_HIDDEN_SELECTORS = (
    "#nav-sidebar",
    "#toggle-nav-sidebar",
    "[id$=deliveries-group]",
    "#dunning_reminders-group",
    ".submit-row",
    "#footer",
)


def _readme_screenshot(page, name: str) -> None:
    """With ``METERLINE_README_SCREENSHOTS`` set, save ``docs/screenshots/<name>.png``: the page without the
    navigation sidebar and the sections the README does not discuss (shown again afterwards)."""
    if not os.environ.get("METERLINE_README_SCREENSHOTS"):
        return
    README_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    hidden = page.evaluate(
        """([headings, selectors]) => {
            const hide = [...document.querySelectorAll(selectors.join(","))];
            for (const heading of document.querySelectorAll("fieldset h2")) {
                if (headings.includes(heading.textContent.trim())) hide.push(heading.closest("fieldset"));
            }
            hide.forEach((el) => { el.dataset.readmeHidden = el.style.display; el.style.display = "none"; });
            document.getElementById("main")?.classList.replace("shifted", "readme-unshifted");
            return hide.length;
        }""",
        [list(README_HIDDEN_HEADINGS), list(README_HIDDEN_SELECTORS)],
    )
    assert hidden, "the page changed: nothing of README_HIDDEN_* found"
    page.screenshot(path=str(README_SCREENSHOTS / f"{name}.png"), full_page=True)
    page.evaluate(
        """() => {
            document.querySelectorAll("[data-readme-hidden]").forEach((el) => {
                el.style.display = el.dataset.readmeHidden; delete el.dataset.readmeHidden;
            });
            document.getElementById("main")?.classList.replace("readme-unshifted", "shifted");
        }"""
    )


def _field(page, name: str) -> str:
    return page.locator(f".field-{name} .readonly").first.inner_text().strip()


def _record_payment(page, amount: str | None, reference: str) -> None:
    page.click("#invoice-record-payment")
    page.wait_for_url(re.compile(r"/record-payment/$"))
    if amount is not None:
        page.fill("#id_amount", amount)
    page.select_option("#id_method", PaymentMethod.BANK_TRANSFER)
    page.fill("#id_reference", reference)
    page.click("#record-payment-form input[type=submit]")
    page.wait_for_url(re.compile(r"/admin/invoicing/invoice/[^/]+/change/$"))


def _overdue_receivables(merchant: Merchant, now: datetime) -> None:
    """Another customer's open invoices, issued in the past with 14-day terms, and a third one's credit."""
    late = account(merchant, payment_term_days=14)
    late.customer.name = "Bolt Freight"
    late.customer.save(update_fields=["name"])
    issued(late, "300.00", now=now - timedelta(days=30), day=0)  # due 16 days ago: 1–30
    part_paid = issued(late, "640.00", now=now - timedelta(days=59), day=1)  # due 45 days ago: 31–60
    issued(late, "75.50", now=now - timedelta(days=120), day=2)  # due 106 days ago: over 90
    payment_record(
        customer=late.customer,
        currency="USD",
        amount=Decimal("140.00"),
        method=PaymentMethod.CHECK,
        received_at=now - timedelta(days=10),
        now=now - timedelta(days=10),
        invoice_ids=[part_paid.pk],
    )
    credit_only = CustomerFactory(merchant=merchant, name="Cedar Labs")
    payment_record(
        customer=credit_only,
        currency="USD",
        amount=Decimal("50.00"),
        method=PaymentMethod.BANK_TRANSFER,
        received_at=now - timedelta(days=3),
        now=now - timedelta(days=3),
    )


def test_finance_pays_in_part_credits_a_paid_invoice_and_reads_the_credit_on_the_next_and_the_aging(page, live_server):
    base = live_server.url
    now = timezone.now()
    merchant = Merchant.objects.create(name="Receivables Labs", default_currency="USD")
    plan = PlanFactory(
        merchant=merchant,
        product__merchant=merchant,
        product__name="Cloud",
        name="Pro",
        currency="USD",
        default_tax_rate=Decimal("10"),
    )
    fee_price(plan, "1250.00", term=PaymentTerm.IN_ARREARS, name="Platform fee")
    customer = CustomerFactory(merchant=merchant, name="Northwind Robotics")
    # Started on the first of the month before last: the start closes both ended months (two drafts).
    subscription = subscription_start(
        customer=customer, plan=plan, started_at=_month_start(now, 2), now=now, extra_fields={"payment_term_days": 30}
    )
    first, following = Invoice.objects.filter(subscription=subscription).order_by("period_start")
    assert (first.status, following.status) == (InvoiceStatus.DRAFT, InvoiceStatus.DRAFT)
    first = invoice_finalize(invoice=first, now=now)
    _overdue_receivables(merchant, now)
    staff_user_with_role("fiona", BILLING_ADMIN)
    if os.environ.get("METERLINE_README_SCREENSHOTS"):
        page.set_viewport_size({"width": 1280, "height": 800})

    # (a) a partial payment on the issued invoice
    log_in(page, base, "fiona")
    page.goto(admin_url(base, "invoicing/invoice", first.pk))
    assert _field(page, "status") == "Issued"
    assert (_field(page, "total_display"), _field(page, "amount_due_display")) == ("$1,375.00", "$1,375.00")
    page.click("#invoice-record-payment")
    page.wait_for_url(re.compile(r"/record-payment/$"))
    assert page.input_value("#id_amount") == "1375.00"  # offered: everything due
    page.go_back()
    _record_payment(page, "500.00", "Wire 4471")
    assert page.locator(".messagelist .success").inner_text() == (
        f"Payment of $500.00 recorded: $500.00 to {first.number}."
    )
    assert _field(page, "status") == "Partially paid"
    assert _field(page, "amount_due_display") == "$875.00"
    payments = page.locator("#payment_allocations-group tbody tr.has_original")
    assert payments.count() == 1
    assert "$500.00" in payments.first.inner_text() and "Wire 4471" in payments.first.inner_text()
    page.screens("invoice partially paid")
    _readme_screenshot(page, "receivables-partially-paid")

    # (b) the rest: the form offers what is still due; then a partial credit note on the paid invoice
    page.click("#invoice-record-payment")
    page.wait_for_url(re.compile(r"/record-payment/$"))
    assert page.input_value("#id_amount") == "875.00"
    page.go_back()
    _record_payment(page, None, "Wire 4502")
    assert _field(page, "status") == "Paid"
    assert _field(page, "amount_due_display") == "$0.00"
    assert page.locator("#payment_allocations-group tbody tr.has_original").count() == 2
    page.screens("invoice paid")

    page.click("#invoice-credit-note")
    page.wait_for_url(re.compile(r"/credit-note/$"))
    page.check("input[name=scope][value=lines]")
    page.locator("tr.credit-line", has_text="Platform fee").locator("input").fill("200.00")
    page.check("input[name=settlement][value=customer_credit]")
    page.fill("#id_reason", "Two days of outage in the billed month")
    page.screens("credit note form")
    page.click("#confirm-form input[type=submit]")
    page.wait_for_url(re.compile(r"/admin/invoicing/invoice/[^/]+/change/$"))
    note = first.credit_notes.get()
    assert page.locator(".messagelist .success").inner_text() == f"Credit note {note.number} issued for $220.00."
    assert (_field(page, "status"), _field(page, "amount_due_display")) == ("Paid", "$0.00")
    credit_note_row = page.locator("#credit_notes-group tbody tr.has_original")
    assert credit_note_row.count() == 1
    assert credit_note_row.locator(".field-settled_as").inner_text().strip() == "$220.00 to customer credit"
    credit_note_row.locator("a.inlinechangelink").click()
    page.wait_for_url(re.compile(r"/admin/invoicing/creditnote/[^/]+/change/$"))
    assert _field(page, "total_display") == "$220.00"
    assert _field(page, "settlement") == "Customer credit"
    assert (
        _field(page, "applied_to_due"),
        _field(page, "credited_to_balance"),
        _field(page, "refunded"),
    ) == ("$0.00", "$220.00", "$0.00")
    page.screens("credit note settled as customer credit")
    _readme_screenshot(page, "receivables-credit-note")

    # (c) the customer's credit balance, then applied to the next invoice when finance issues it
    page.goto(admin_url(base, "catalog/customer", customer.pk))
    assert page.locator(".customer-credit-balance").all_inner_texts() == ["$220.00"]
    page.screens("customer credit balance")

    page.goto(f"{base}/admin/invoicing/invoice/?customer__id__exact={customer.pk}&status__exact=draft")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    rows.first.locator("input.action-select").check()
    page.select_option("select[name=action]", "action_finalize")
    page.click("button[name=index]")
    assert page.locator(".messagelist .success").inner_text() == "Issued: 1 invoice(s)."
    following.refresh_from_db()
    page.goto(admin_url(base, "invoicing/invoice", following.pk))
    assert _field(page, "status") == "Issued"
    assert (_field(page, "total_display"), _field(page, "amount_due_display")) == ("$1,375.00", "$1,155.00")
    applied = page.locator("#lines-group tbody tr", has_text="Applied credit balance")
    assert applied.count() == 1
    assert applied.locator(".field-amount_display").inner_text().strip() == "-$220.00"
    page.screens("next invoice with applied credit")
    _readme_screenshot(page, "receivables-applied-credit")
    page.goto(admin_url(base, "catalog/customer", customer.pk))
    assert page.locator(".customer-credit-balance").all_inner_texts() == ["$0.00"]  # spent

    # (d) the AR aging report from the invoice list's toolbar, and its CSV
    page.goto(f"{base}/admin/invoicing/invoice/")
    page.click("#invoice-list-aging")
    page.wait_for_url(re.compile(r"/admin/invoicing/invoice/aging/$"))
    table = page.locator("#aging-USD + table.aging")
    cells = {
        row.locator("th").inner_text().strip(): [cell.strip() for cell in row.locator("td").all_inner_texts()]
        for row in table.locator("tbody tr, tfoot tr").all()
    }
    #               current     1–30       31–60      61–90    over 90   total        credit    net
    assert cells == {
        "Bolt Freight": ["$0.00", "$300.00", "$500.00", "$0.00", "$75.50", "$875.50", "$0.00", "$875.50", "Statement"],
        "Cedar Labs": ["$0.00", "$0.00", "$0.00", "$0.00", "$0.00", "$0.00", "$50.00", "-$50.00", "Statement"],
        "Northwind Robotics": [
            "$1,155.00",
            "$0.00",
            "$0.00",
            "$0.00",
            "$0.00",
            "$1,155.00",
            "$0.00",
            "$1,155.00",
            "Statement",
        ],
        "Total": ["$1,155.00", "$300.00", "$500.00", "$0.00", "$75.50", "$2,030.50", "$50.00", "$1,980.50", ""],
    }
    page.screens("aging report")
    _readme_screenshot(page, "receivables-aging")

    with page.expect_download() as download_info:
        page.click("#aging-export")
    download = download_info.value
    assert download.suggested_filename == f"receivables-aging-{timezone.now():%Y-%m-%d}.csv"
    with open(download.path(), encoding="utf-8") as exported:
        rows = list(csv.DictReader(io.StringIO(exported.read())))
    assert [
        (
            r["customer"],
            r["current"],
            r["days_1_30"],
            r["days_31_60"],
            r["over_90"],
            r["customer_credit"],
            r["net_receivable"],
        )
        for r in rows
    ] == [
        ("Bolt Freight", "0.00", "300.00", "500.00", "75.50", "0.00", "875.50"),
        ("Cedar Labs", "0.00", "0.00", "0.00", "0.00", "50.00", "-50.00"),
        ("Northwind Robotics", "1155.00", "0.00", "0.00", "0.00", "0.00", "1155.00"),
        ("Total", "1155.00", "300.00", "500.00", "75.50", "50.00", "1980.50"),
    ]

"""Destructive invoice actions confirm first and ask why: void, void and reissue, credit notes (full, or chosen
lines and amounts) and "Run billing now" show what will happen, change nothing until confirmed with a reason,
and keep the reason where finance reads it again (void reason, credit note document, billing run, history)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from io import BytesIO

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.admin.utils import quote
from django.contrib.messages import get_messages
from django.urls import reverse
from pypdf import PdfReader

from catalog.models import PaymentTerm
from invoicing.models import BillingRun, CreditNote, Invoice, InvoiceKind, InvoiceStatus, LineKind
from invoicing.services import billing_run_due, billing_run_execute, invoice_finalize, subscription_start
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price, metered_price, record_usage

pytestmark = pytest.mark.django_db

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
MAR_1 = datetime(2026, 3, 1, tzinfo=UTC)
CHANGELIST = "admin:invoicing_invoice_changelist"


@pytest.fixture
def issued(seller):
    """January's recurring invoice, issued: Input tokens $2.47 + Platform fee $49.00 + 10 % tax = $56.62."""
    plan = PlanFactory(merchant=seller, product__merchant=seller, name="Pro", default_tax_rate=Decimal("10"))
    fee_price(plan, "49.00", term=PaymentTerm.IN_ADVANCE, name="Platform fee")
    price = metered_price(plan, "0.000002", name="Input tokens")
    customer = CustomerFactory(merchant=seller, name="Acme Corp")
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    record_usage(customer, price.billable_metric, datetime(2026, 1, 9, tzinfo=UTC), 1_234_567)
    billing_run_execute(as_of=FEB_1)
    invoice = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    return invoice_finalize(invoice=invoice, now=FEB_1)


@pytest.fixture
def opening(issued):
    """Invoice 0 of the same subscription (January's platform fee, $49.00 + $4.90 tax), issued at the start."""
    return Invoice.objects.get(subscription=issued.subscription, kind=InvoiceKind.OPENING)


@pytest.fixture
def at(monkeypatch):
    """Freeze the admin's clock: ``at(moment)``."""

    def freeze(moment: datetime) -> None:
        monkeypatch.setattr("invoicing.admin_confirmations.timezone.now", lambda: moment)

    return freeze


def line(invoice, name):
    return invoice.lines.get(description__startswith=name)


def post_action(client, action, invoices, **form):
    return client.post(
        reverse(CHANGELIST), {"action": action, "_selected_action": [invoice.pk for invoice in invoices], **form}
    )


def texts(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def history(invoice) -> list[str]:
    return list(
        LogEntry.objects.filter(object_id=invoice.pk, content_type__model="invoice")
        .order_by("pk")
        .values_list("change_message", flat=True)
    )


def pdf_text(content: bytes) -> str:
    return "".join(page.extract_text() for page in PdfReader(BytesIO(content)).pages)


# -- void and void-and-reissue ------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["action_void", "action_void_and_reissue"])
def test_void_actions_list_the_invoices_and_change_nothing_until_confirmed(billing_admin_client, issued, action):
    response = post_action(billing_admin_client, action, [issued])

    assert response.status_code == 200
    rows = [(row["number"], row["customer"], row["status"], row["total"]) for row in response.context["rows"]]
    assert rows == [("NLE-2026-000002", "Acme Corp", "Issued", "$56.62")]
    body = response.content.decode()
    assert 'name="post" value="yes"' in body and f'name="_selected_action" value="{issued.pk}"' in body
    assert '<textarea name="reason"' in body
    issued.refresh_from_db()
    assert (issued.status, issued.void_reason) == (InvoiceStatus.ISSUED, "")
    assert Invoice.objects.count() == 2


def test_confirming_without_a_reason_shows_the_page_again_with_an_error(billing_admin_client, issued):
    response = post_action(billing_admin_client, "action_void", [issued], post="yes", reason="   ")

    assert response.status_code == 200
    assert response.context["form"].errors == {"reason": ["Give a reason: it is kept with what this changes."]}
    issued.refresh_from_db()
    assert issued.status == InvoiceStatus.ISSUED


def test_void_confirmed_with_a_reason_stores_it_on_the_invoice_its_document_and_history(
    billing_admin_client, issued, at
):
    at(datetime(2026, 2, 10, tzinfo=UTC))
    response = post_action(
        billing_admin_client, "action_void", [issued], post="yes", reason="Billed to the wrong entity"
    )

    assert response.status_code == 302
    assert texts(response) == ["Voided: 1 invoice(s)."]
    issued.refresh_from_db()
    assert (issued.status, issued.void_reason) == (InvoiceStatus.VOID, "Billed to the wrong entity")
    assert history(issued) == ["Voided. Reason: Billed to the wrong entity"]
    html = billing_admin_client.get(reverse("admin:invoicing_invoice_html", args=[issued.pk])).content.decode()
    assert "Feb 10, 2026: Billed to the wrong entity" in html


def test_void_and_reissue_confirmed_writes_the_draft_and_keeps_the_reason(billing_admin_client, issued):
    post_action(billing_admin_client, "action_void_and_reissue", [issued], post="yes", reason="Usage corrected")

    issued.refresh_from_db()
    draft = Invoice.objects.get(replaces=issued)
    assert (issued.status, issued.void_reason, draft.status) == (
        InvoiceStatus.VOID,
        "Usage corrected",
        InvoiceStatus.DRAFT,
    )
    assert history(issued) == [f"Voided and reissued as draft {draft.pk}. Reason: Usage corrected"]


def test_a_refusal_of_the_service_is_reported_per_invoice(billing_admin_client, issued):
    Invoice.objects.filter(pk=issued.pk).update(status=InvoiceStatus.PAID)

    response = post_action(billing_admin_client, "action_void", [issued], post="yes", reason="try")

    assert texts(response) == ["NLE-2026-000002: Invoice NLE-2026-000002 is paid; it cannot be voided."]
    assert history(issued) == []


# -- credit notes ------------------------------------------------------------------------------------------


def test_credit_note_for_several_invoices_lists_what_is_left_and_credits_everything_once_confirmed(
    billing_admin_client, issued, opening
):
    response = post_action(billing_admin_client, "action_credit_note", [issued, opening])

    rows = [(row["number"], row["total"], row["left"]) for row in response.context["rows"]]
    assert rows == [("NLE-2026-000001", "$53.90", "$49.00"), ("NLE-2026-000002", "$56.62", "$51.47")]
    assert CreditNote.objects.count() == 0

    post_action(billing_admin_client, "action_credit_note", [issued, opening], post="yes", reason="Service outage")

    notes = CreditNote.objects.order_by("number")
    assert [(note.invoice_id, note.total, note.reason) for note in notes] == [
        (opening.pk, Decimal("53.9000"), "Service outage"),
        (issued.pk, Decimal("56.6200"), "Service outage"),
    ]
    assert history(issued) == [f"Credit note {notes[1].number} issued. Reason: Service outage"]


def test_credit_note_action_for_one_invoice_offers_its_lines_and_credit_everything(billing_admin_client, issued):
    response = post_action(billing_admin_client, "action_credit_note", [issued])

    body = response.content.decode()
    for description in ("Input tokens", "Platform fee"):
        assert f'name="amount_{line(issued, description).pk}"' in body
    assert "Everything left to credit on the invoice ($51.47 before tax)" in body
    assert CreditNote.objects.count() == 0

    response = post_action(
        billing_admin_client,
        "action_credit_note",
        [issued],
        post="yes",
        scope="all",
        reason="Goodwill: outage on Jan 9",
    )

    assert response.status_code == 302
    note = CreditNote.objects.get(invoice=issued)
    assert (note.total, note.reason) == (Decimal("56.6200"), "Goodwill: outage on Jan 9")
    html = billing_admin_client.get(reverse("admin:invoicing_invoice_html", args=[issued.pk]))
    assert html.status_code == 200
    pdf = billing_admin_client.get(reverse("admin:invoicing_creditnote_pdf", args=[note.pk])).content
    assert "Goodwill: outage on Jan 9" in pdf_text(pdf)


def test_the_invoice_page_offers_a_partial_credit_note_and_credits_exactly_the_amounts_given(
    billing_admin_client, issued
):
    page = billing_admin_client.get(reverse("admin:invoicing_invoice_change", args=[quote(issued.pk)])).content.decode()
    url = reverse("admin:invoicing_invoice_credit_note", args=[quote(issued.pk)])
    assert f'href="{url}"' in page
    tokens, fee = line(issued, "Input tokens"), line(issued, "Platform fee")
    assert billing_admin_client.get(url).status_code == 200

    response = billing_admin_client.post(
        url,
        {"scope": "lines", f"amount_{tokens.pk}": "1.00", f"amount_{fee.pk}": "20", "reason": "Partial outage"},
    )

    assert response.status_code == 302
    assert response.url == reverse("admin:invoicing_invoice_change", args=[quote(issued.pk)])
    note = CreditNote.objects.get(invoice=issued)
    assert sorted((row.invoice_line_id, row.amount) for row in note.lines.all()) == sorted(
        [(tokens.pk, Decimal("1.0000")), (fee.pk, Decimal("20.0000"))]
    )
    assert (note.subtotal, note.tax, note.total, note.reason) == (
        Decimal("21.0000"),
        Decimal("2.1000"),
        Decimal("23.1000"),
        "Partial outage",
    )
    assert texts(response) == [f"Credit note {note.number} issued for $23.10."]


def test_an_amount_above_what_is_left_on_the_line_is_refused_on_that_field(billing_admin_client, issued):
    url = reverse("admin:invoicing_invoice_credit_note", args=[quote(issued.pk)])
    tokens, fee = line(issued, "Input tokens"), line(issued, "Platform fee")
    billing_admin_client.post(url, {"scope": "lines", f"amount_{tokens.pk}": "1.00", "reason": "first"})

    response = billing_admin_client.post(
        url, {"scope": "lines", f"amount_{tokens.pk}": "1.48", f"amount_{fee.pk}": "5", "reason": "second"}
    )

    assert response.status_code == 200
    assert response.context["form"].errors == {
        f"amount_{tokens.pk}": ["At most $1.47 is left to credit on this line ($2.47 billed, $1.00 already credited)."]
    }
    assert CreditNote.objects.filter(invoice=issued).count() == 1


@pytest.mark.parametrize(
    ("form", "errors"),
    [
        (
            {"scope": "lines"},
            {"__all__": ["Enter an amount on at least one line, or choose to credit everything left."]},
        ),
        ({"scope": "lines", "tokens": "0"}, {"tokens": ["Enter an amount above zero, or leave the line empty."]}),
        ({"scope": "lines", "tokens": "0.005"}, {"tokens": ["USD amounts have at most 2 decimals."]}),
        (
            {"scope": "all", "tokens": "1"},
            {"scope": ["Amounts are entered on the lines: choose “Only the amounts entered”, or clear them."]},
        ),
        (
            {"scope": "lines", "tokens": "1", "reason": ""},
            {"reason": ["Give a reason: it is kept with what this changes."]},
        ),
    ],
)
def test_credit_note_form_errors_are_finance_readable_and_nothing_is_credited(
    billing_admin_client, issued, form, errors
):
    tokens = line(issued, "Input tokens")
    field = f"amount_{tokens.pk}"
    data = {"reason": "why", **{(field if key == "tokens" else key): value for key, value in form.items()}}

    response = billing_admin_client.post(reverse("admin:invoicing_invoice_credit_note", args=[quote(issued.pk)]), data)

    assert response.status_code == 200
    assert response.context["form"].errors == {
        (field if key == "tokens" else key): value for key, value in errors.items()
    }
    assert CreditNote.objects.count() == 0


def test_a_draft_has_no_credit_button_and_the_service_refusal_is_shown_on_the_page(billing_admin_client, issued):
    draft = Invoice.objects.create(
        merchant=issued.merchant,
        customer=issued.customer,
        subscription=issued.subscription,
        plan=issued.plan,
        kind=InvoiceKind.ADJUSTMENT,
        currency="USD",
        period_start=JAN_1,
        period_end=FEB_1,
    )
    url = reverse("admin:invoicing_invoice_credit_note", args=[quote(draft.pk)])
    page = billing_admin_client.get(reverse("admin:invoicing_invoice_change", args=[quote(draft.pk)])).content.decode()
    assert url not in page

    response = billing_admin_client.post(url, {"scope": "all", "reason": "why"})

    assert response.context["form"].non_field_errors() == ["Only issued or paid invoices can be credited."]


def test_a_viewer_gets_no_credit_button_and_403_on_the_credit_page(viewer_client, issued):
    url = reverse("admin:invoicing_invoice_credit_note", args=[quote(issued.pk)])
    page = viewer_client.get(reverse("admin:invoicing_invoice_change", args=[quote(issued.pk)])).content.decode()

    assert url not in page
    assert viewer_client.get(url).status_code == 403
    tokens = line(issued, "Input tokens")
    assert viewer_client.post(url, {"scope": "lines", f"amount_{tokens.pk}": "1", "reason": "x"}).status_code == 403
    assert CreditNote.objects.count() == 0


# -- run billing now ---------------------------------------------------------------------------------------


def test_run_billing_get_shows_what_is_due_and_starts_nothing(billing_admin_client, issued, at):
    at(MAR_1)
    runs_before = BillingRun.objects.count()

    response = billing_admin_client.get(reverse("admin:invoicing_run_billing"))

    assert response.status_code == 200
    assert [(item["customer"], item["what"], item["period"]) for item in response.context["due"]] == [
        ("Acme Corp", "Period invoice", "2026-02-01 – 2026-03-01")
    ]
    assert (response.context["invoice_count"], response.context["subscription_count"]) == (1, 1)
    assert "would write <strong>1 invoice</strong> for <strong>1 subscription</strong>" in response.content.decode()
    assert BillingRun.objects.count() == runs_before
    assert len(billing_run_due(as_of=MAR_1)) == 1


def test_run_billing_post_without_a_reason_starts_nothing(billing_admin_client, issued, at):
    at(MAR_1)
    runs_before = BillingRun.objects.count()

    response = billing_admin_client.post(reverse("admin:invoicing_run_billing"), {"reason": ""})

    assert response.status_code == 200
    assert response.context["form"].errors == {"reason": ["Give a reason: it is kept with what this changes."]}
    assert BillingRun.objects.count() == runs_before


def test_run_billing_post_with_a_reason_runs_and_keeps_who_and_why(
    billing_admin_client, issued, at, django_capture_on_commit_callbacks
):
    at(MAR_1)

    with django_capture_on_commit_callbacks(execute=True):
        response = billing_admin_client.post(reverse("admin:invoicing_run_billing"), {"reason": "Beat was down"})

    run = BillingRun.objects.latest("pk")
    assert response.url == reverse("admin:invoicing_billingrun_change", args=[run.pk])
    assert (run.trigger, run.requested_by, run.note, run.invoices_created) == (
        "admin",
        "billing-admin",
        "Beat was down",
        1,
    )
    assert Invoice.objects.filter(subscription=issued.subscription, period_start=FEB_1).exists()
    assert billing_run_due(as_of=MAR_1) == []


def test_a_viewer_gets_403_on_run_billing_both_ways(viewer_client, issued):
    runs_before = BillingRun.objects.count()
    assert viewer_client.get(reverse("admin:invoicing_run_billing")).status_code == 403
    assert viewer_client.post(reverse("admin:invoicing_run_billing"), {"reason": "x"}).status_code == 403
    assert BillingRun.objects.count() == runs_before


def test_the_lines_the_credit_page_lists_are_every_line_but_tax(billing_admin_client, issued):
    response = billing_admin_client.get(reverse("admin:invoicing_invoice_credit_note", args=[quote(issued.pk)]))

    listed = [row["line"].description for row in response.context["form"].line_rows()]
    assert listed == [item.description for item in issued.lines.exclude(kind=LineKind.TAX).order_by("position")]
    assert len(listed) == 2

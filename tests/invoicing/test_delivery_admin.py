"""Finance's delivery pages: templates start from the default and refuse what leaves the sandbox; the
delivery log shows on the credit note page; a viewer is not offered the resend action."""

from __future__ import annotations

import pytest
from django.urls import reverse

from invoicing.models import DeliveryReason, DeliveryStatus, DocumentDelivery, MailTemplate
from invoicing.services import credit_note_issue, invoice_finalize
from tests.invoicing.factories import CustomerFactory
from tests.invoicing.test_delivery import FEB_1, NOW, _draft

pytestmark = pytest.mark.django_db


def test_a_new_template_starts_from_the_default_wording(superuser_client):
    page = superuser_client.get(reverse("admin:invoicing_mailtemplate_add") + "?kind=credit_note").content.decode()

    assert "Credit note {{ number }} from {{ merchant_name }}" in page
    assert "{{ invoice_number }}" in page  # the variables a credit note's template may use are listed


def test_a_template_that_leaves_the_sandbox_is_refused_on_save(superuser_client, seller):
    response = superuser_client.post(
        reverse("admin:invoicing_mailtemplate_add"),
        {
            "merchant": seller.pk,
            "kind": "invoice",
            "subject": "Invoice {{ number }}",
            "body_text": "{% include 'invoicing/document.html' %}",
            "body_html": "<p>{{ number }}</p>",
        },
    )

    assert response.status_code == 200
    assert "Not a valid template" in response.content.decode()
    assert not MailTemplate.objects.exists()


def test_the_credit_note_page_shows_its_delivery_log(superuser_client, seller):
    invoice = invoice_finalize(invoice=_draft(CustomerFactory(merchant=seller, email="ap@acme.example")), now=FEB_1)
    note = credit_note_issue(invoice=invoice, now=NOW, reason="outage")
    DocumentDelivery.objects.filter(credit_note=note).update(
        status=DeliveryStatus.FAILED, error="ap@acme.example: 550 5.1.1 User unknown", recipients=["ap@acme.example"]
    )

    page = superuser_client.get(reverse("admin:invoicing_creditnote_change", args=[note.pk])).content.decode()

    assert "E-mail deliveries" in page
    assert "550 5.1.1 User unknown" in page
    assert DocumentDelivery.objects.get(credit_note=note).reason == DeliveryReason.ISSUED


def test_a_viewer_sees_the_log_but_not_the_resend_action(viewer_client, billing_admin_client, seller):
    invoice_finalize(invoice=_draft(CustomerFactory(merchant=seller)), now=FEB_1)
    changelist = reverse("admin:invoicing_invoice_changelist")

    assert "action_resend" not in viewer_client.get(changelist).content.decode()
    assert "action_resend" in billing_admin_client.get(changelist).content.decode()
    assert viewer_client.get(reverse("admin:invoicing_documentdelivery_changelist")).status_code == 200

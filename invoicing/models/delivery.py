"""Delivery: issued invoices and credit notes e-mailed to the customer (invoicing/README.md, "Delivery")."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from catalog.models import Merchant
from catalog.validators import validate_email_list

from .credit_notes import CreditNote
from .invoices import Invoice


class MailKind(models.TextChoices):
    INVOICE = "invoice", "Invoice issued"
    CREDIT_NOTE = "credit_note", "Credit note issued"
    REMINDER = "reminder", "Payment reminder (dunning)"
    FINAL_NOTICE = "final_notice", "Final notice (dunning)"
    PAYMENT_FAILED = "payment_failed", "Automatic payment failed"
    PAYMENT_ACTION = "payment_action", "Payment needs the customer's confirmation"
    PAYMENT_LINK = "payment_link", "Link to pay online"


class DeliverySettings(models.Model):
    """How a merchant's documents are e-mailed. A merchant without a row: e-mailed, from the installation's
    ``DEFAULT_FROM_EMAIL`` under the merchant's name, replies going to the merchant's e-mail."""

    merchant = models.OneToOneField(
        Merchant, on_delete=models.CASCADE, primary_key=True, related_name="delivery_settings"
    )
    enabled = models.BooleanField(
        "e-mail documents when issued",
        default=True,
        help_text="Off: issued invoices and credit notes are not e-mailed (a resend from the admin still is).",
    )
    from_name = models.CharField(max_length=200, blank=True, help_text="The sender's name. Empty: the merchant's name.")
    from_email = models.EmailField(
        "from e-mail",
        blank=True,
        help_text="The sender's address. Empty: the installation's DEFAULT_FROM_EMAIL. The mail server or "
        "provider must be allowed to send for its domain (SPF, DKIM), or messages land in spam.",
    )
    reply_to = models.CharField(
        "reply-to",
        max_length=1000,
        blank=True,
        validators=[validate_email_list],
        help_text="Where customers' replies go, comma-separated. Empty: the merchant's e-mail.",
    )
    bcc = models.CharField(
        "BCC",
        max_length=1000,
        blank=True,
        validators=[validate_email_list],
        help_text="A blind copy of every message to these addresses (a finance archive), comma-separated.",
    )
    send_zero_total = models.BooleanField(
        "e-mail zero-total invoices", default=False, help_text="Off: an invoice whose total is zero is not e-mailed."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "delivery settings"
        verbose_name_plural = "delivery settings"

    def __str__(self) -> str:
        return f"Delivery settings of {self.merchant}"


class MailTemplate(models.Model):
    """A merchant's own wording of one e-mail (Django template syntax, rendered in a sandbox with plain
    values only: ``invoicing/mail_templates.py``). Without one, the default on disk is used
    (``invoicing/templates/invoicing/mail/``)."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="mail_templates")
    kind = models.CharField(max_length=20, choices=MailKind.choices)
    subject = models.CharField(max_length=300)
    body_text = models.TextField("text body")
    body_html = models.TextField("HTML body")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["merchant", "kind"]
        constraints = [models.UniqueConstraint(fields=["merchant", "kind"], name="mail_template_unique_per_kind")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.merchant})"

    def clean(self) -> None:
        from ..mail_templates import mail_template_check

        mail_template_check(subject=self.subject, body_text=self.body_text, body_html=self.body_html)


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    BOUNCED = "bounced", "Bounced"
    SKIPPED = "skipped", "Not sent"


class DeliveryReason(models.TextChoices):
    ISSUED = "issued", "Issued"
    RESEND = "resend", "Resent"
    # Dunning (``invoicing/dunning.py``): the invoice again, worded as a reminder or the final notice.
    REMINDER = "reminder", "Payment reminder"
    FINAL_NOTICE = "final", "Final notice"
    # Written by the payments app (above invoicing) about a charge of the invoice: it failed, or the bank
    # asks the customer to confirm it (3-D Secure). The failure reason comes in ``values``. Or a hosted
    # payment page opened for the customer (the API's ``hosted_link``): its address comes in ``values``.
    PAYMENT_FAILED = "pay_failed", "Payment failed"
    PAYMENT_ACTION = "pay_action", "Payment to confirm"
    PAYMENT_LINK = "pay_link", "Payment link"


# The mail wording of each delivery reason of an invoice (a credit note is always MailKind.CREDIT_NOTE).
INVOICE_MAIL_KINDS = {
    DeliveryReason.ISSUED: MailKind.INVOICE,
    DeliveryReason.RESEND: MailKind.INVOICE,
    DeliveryReason.REMINDER: MailKind.REMINDER,
    DeliveryReason.FINAL_NOTICE: MailKind.FINAL_NOTICE,
    DeliveryReason.PAYMENT_FAILED: MailKind.PAYMENT_FAILED,
    DeliveryReason.PAYMENT_ACTION: MailKind.PAYMENT_ACTION,
    DeliveryReason.PAYMENT_LINK: MailKind.PAYMENT_LINK,
}
DUNNING_REASONS = (DeliveryReason.REMINDER, DeliveryReason.FINAL_NOTICE)
PAYMENT_REASONS = (DeliveryReason.PAYMENT_FAILED, DeliveryReason.PAYMENT_ACTION, DeliveryReason.PAYMENT_LINK)
# About collecting the invoice's money: not sent once it is paid, credited or voided; simulated on a test clock.
COLLECTION_REASONS = (*DUNNING_REASONS, *PAYMENT_REASONS)


class DocumentDelivery(models.Model):
    """One e-mail of one invoice or credit note: the delivery log.

    Issuing a document writes its ``issued`` row in the issuing transaction (at most one per document: a
    constraint), and the send starts after commit; a resend is a new ``resend`` row. ``status`` goes
    queued → sent (→ bounced, when the mail provider reports it), queued → failed (refused, or after
    ``DELIVERY_MAX_ATTEMPTS``), or queued → skipped (not to be e-mailed: ``error`` says why). While queued,
    ``next_attempt_at`` is when the next attempt is due; a worker sending holds it a lease ahead.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="+")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, null=True, blank=True, related_name="deliveries")
    credit_note = models.ForeignKey(
        CreditNote, on_delete=models.PROTECT, null=True, blank=True, related_name="deliveries"
    )
    reason = models.CharField(max_length=10, choices=DeliveryReason.choices)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED)
    recipients = models.JSONField(default=list, blank=True, help_text="Set when the message is sent.")
    sender = models.CharField(max_length=300, blank=True)
    subject = models.CharField(max_length=300, blank=True)
    message_id = models.CharField("Message-ID", max_length=255, blank=True, db_index=True)
    provider_message_id = models.CharField(
        "provider message ID", max_length=255, blank=True, db_index=True, help_text="The mail provider's id, if any."
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True, help_text="The last error (the SMTP server's answer), or why not sent.")
    requested_by = models.CharField(max_length=150, blank=True, help_text="Who asked for a resend.")
    values = models.JSONField(
        default=dict,
        blank=True,
        help_text="Plain template values of this message besides the document's (a payment's failure reason).",
    )
    queued_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-queued_at", "-id"]
        verbose_name_plural = "document deliveries"
        constraints = [
            models.CheckConstraint(
                condition=Q(invoice__isnull=False, credit_note__isnull=True)
                | Q(invoice__isnull=True, credit_note__isnull=False),
                name="document_delivery_one_document",
            ),
            # Exactly once: issuing a document queues one delivery, whoever retries the issue.
            models.UniqueConstraint(
                fields=["invoice"],
                condition=Q(reason="issued", invoice__isnull=False),
                name="one_issued_delivery_per_invoice",
            ),
            models.UniqueConstraint(
                fields=["credit_note"],
                condition=Q(reason="issued", credit_note__isnull=False),
                name="one_issued_delivery_per_credit_note",
            ),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.document} ({self.get_reason_display().lower()}): {self.get_status_display().lower()}"

    @property
    def document(self) -> Invoice | CreditNote:
        return self.invoice if self.invoice_id else self.credit_note

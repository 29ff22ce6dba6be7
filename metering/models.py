"""Usage events: the append-only record of what customers consumed.

One row per accepted event. Rows are never updated except to link ``customer`` once a customer
with the event's ``external_subject`` exists (see ``metering/README.md`` for the table design).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from catalog.models import Customer, Merchant

EVENT_ID_PREFIX = "evt_"


class UsageEvent(models.Model):
    """A usage event as received over ``POST /v0/events`` (CloudEvents-like, Paygentic shape)."""

    id = models.BigAutoField(primary_key=True)
    # db_index off: the unique (merchant, idempotency_key) index already leads with merchant_id.
    # db_constraint off on both keys (migration 0004): the ingestion statements join the merchant's
    # customers and lock the rows they join (FOR KEY SHARE), and customer deletion locks the customer
    # before the ORM's PROTECT check; the deferred constraint triggers cost a third of PostgreSQL's
    # work per inserted row (metering/README.md, "Foreign keys").
    merchant = models.ForeignKey(
        Merchant, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    # Null while the event names an ``external_subject`` no customer carries yet; filled by
    # ``events_link_external_subjects``. Selectors also match unlinked rows by external id, so
    # usage is right before the link happens.
    customer = models.ForeignKey(
        Customer, on_delete=models.PROTECT, related_name="+", null=True, blank=True, db_index=False, db_constraint=False
    )
    external_subject = models.CharField(max_length=200, blank=True, default="")
    event_type = models.CharField(max_length=200)
    timestamp = models.DateTimeField(help_text="When the usage happened (event time), aware UTC.")
    received_at = models.DateTimeField(help_text="When Meterline accepted the event.")
    # Unique per merchant (database constraint): a resend with the same key is a duplicate, never counted twice.
    idempotency_key = models.CharField(max_length=255)
    external_id = models.CharField(max_length=255, blank=True, default="")
    source = models.CharField(max_length=500, blank=True, default="")
    data = models.JSONField(default=dict)

    class Meta:
        verbose_name = "usage event"
        constraints = [
            models.UniqueConstraint(fields=["merchant", "idempotency_key"], name="usage_event_idempotency_key_unique"),
        ]
        indexes = [
            # One metric, one customer, one window: an index range scan of exactly the rows summed.
            # Customer ids are globally unique, so merchant_id would add nothing here; leading with
            # customer_id also serves the foreign key (PROTECT on customer delete) without another index.
            models.Index(fields=["customer", "event_type", "timestamp"], name="usage_event_customer_type_ts"),
            # One metric, all customers, one window (period close, meter API, billing home per day): an exact
            # range over the metric's events; COUNT per day is index-only. Built concurrently (migration 0003).
            models.Index(fields=["merchant", "event_type", "timestamp"], name="usage_event_merchant_type_ts"),
            # Events still waiting for their customer: tiny, because linked rows leave it.
            models.Index(
                fields=["merchant", "external_subject"],
                name="usage_event_unlinked_subject",
                condition=Q(customer__isnull=True),
            ),
            # A BRIN index on "timestamp" (PostgreSQL only) is created by migration 0002.
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.public_id}"

    @property
    def public_id(self) -> str:
        return f"{EVENT_ID_PREFIX}{self.pk}"

    @property
    def subject(self) -> str:
        return self.customer_id or ""

"""Subscription-only price intervals (the client's ``subscription_owned`` intervals): a catalog price that bills
one subscription only, from ``start_date`` to ``end_date``, at the rate written when it was added — a platform
add-on fee or a metered price agreed mid-term. It is the subscription's, not its plan's: a plan version change
or a plan change keeps it.

Written only by ``invoicing.services.price_intervals`` (through ``subscription_intervals_edit``, which records
the change in the same transaction); billed by ``invoicing.calculation.Biller.price_interval_lines`` on the
recurring invoices, prorated by day as the plan's fees are. A row that an invoice billed is never deleted; its
``end_date`` closes it instead.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from catalog.models import QUANTITY_DIGITS, RATE_DIGITS, Merchant, Price, Subscription
from core.ids import PublicIdField


class SubscriptionPriceInterval(models.Model):
    id = PublicIdField(prefix="sint")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="+")
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="price_intervals")
    # PROTECT: the periods it billed are explained from it.
    price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="+")
    price_key = models.CharField(max_length=64)
    # The rate this subscription pays per unit (a fee: per unit of ``quantity`` each period); the catalog price's
    # rate when the interval was added unless one was written, never re-read from the catalog afterwards.
    unit_price = models.DecimalField(**RATE_DIGITS)
    # A fee bills ``quantity`` units each period; a metered price bills its usage (a base of 1).
    quantity = models.DecimalField(**QUANTITY_DIGITS, default=1)
    start_date = models.DateTimeField()
    end_date = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["start_date", "price_key"]
        constraints = [
            # One interval per key and subscription: an add of a key it already has is an overlap (409), not
            # a second line; a closed one keeps its key (its invoice lines name it).
            models.UniqueConstraint(fields=["subscription", "price_key"], name="price_interval_key_unique"),
            models.CheckConstraint(
                condition=Q(end_date__isnull=True) | Q(end_date__gt=F("start_date")),
                name="price_interval_end_after_start",
            ),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="price_interval_quantity_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.price_key} of {self.subscription_id} from {self.start_date:%Y-%m-%d}"

"""Invoicing's models, one module per concern; every public name is importable from ``invoicing.models``.

- ``invoices``: invoices, their lines, document numbering;
- ``credit_notes``: credit notes and their lines;
- ``billing``: scheduled plan changes, billing runs, real-time usage counters;
- ``delivery``: e-mail settings, templates and the delivery log;
- ``receivables``: payments, allocations, customer credit (invoicing/RECEIVABLES.md);
- ``dunning``: dunning settings and reminders;
- ``spend``: spend alerts, their firings, spend caps and the watch of their customers (invoicing/SPEND.md).
- ``intervals``: the record of each change to a subscription's price intervals.
- ``price_intervals``: subscription-only price intervals (a catalog price billing one subscription only).

Migrations name ``invoicing.models.validate_dunning_steps`` and ``default_dunning_steps``: keep them exported.
"""

from __future__ import annotations

from .adjustments import ADJUSTMENT_QUANTITY_MAX, AdjustmentType, SubscriptionAdjustment
from .billing import (
    BillingRun,
    BillingRunChunk,
    BillingRunError,
    BillingRunStatus,
    PlanChangeKind,
    RealtimeUsageCounter,
    SubscriptionPlanChange,
)
from .credit_notes import (
    CreditNote,
    CreditNoteLine,
    CreditNoteSettlement,
    CreditNoteStatus,
)
from .delivery import (
    COLLECTION_REASONS,
    DUNNING_REASONS,
    INVOICE_MAIL_KINDS,
    PAYMENT_REASONS,
    DeliveryReason,
    DeliverySettings,
    DeliveryStatus,
    DocumentDelivery,
    MailKind,
    MailTemplate,
)
from .dunning import (
    DunningAfterFinal,
    DunningReminder,
    DunningReminderStatus,
    DunningSettings,
    default_dunning_steps,
    validate_dunning_steps,
)
from .intervals import IntervalChangeReason, SubscriptionIntervalChange
from .invoices import (
    MANUAL_AMOUNT_MAX,
    MANUAL_QUANTITY_MAX,
    MANUAL_UNIT_PRICE_MAX,
    MONEY_DIGITS,
    OPEN_STATUSES,
    SETTLEMENT_LINE_KINDS,
    ZERO,
    DocumentSequence,
    DocumentType,
    Invoice,
    InvoiceError,
    InvoiceKind,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
    ManualLineItem,
)
from .price_intervals import SubscriptionPriceInterval
from .receivables import (
    CustomerCreditEntry,
    CustomerCreditKind,
    Payment,
    PaymentAllocation,
    PaymentMethod,
)
from .spend import (
    SPEND_AMOUNT_MAX,
    SPEND_PERCENT_MAX,
    SPEND_THRESHOLDS_MAX,
    SpendAlert,
    SpendAlertFiring,
    SpendCap,
    SpendCapMode,
    SpendEmailStatus,
    SpendThresholdKind,
    SpendWatch,
)

__all__ = [
    "IntervalChangeReason",
    "SubscriptionIntervalChange",
    "SubscriptionPriceInterval",
    "ADJUSTMENT_QUANTITY_MAX",
    "AdjustmentType",
    "SubscriptionAdjustment",
    "DocumentSequence",
    "DocumentType",
    "Invoice",
    "InvoiceError",
    "InvoiceKind",
    "InvoiceLine",
    "InvoiceStatus",
    "LineKind",
    "ManualLineItem",
    "MANUAL_AMOUNT_MAX",
    "MANUAL_QUANTITY_MAX",
    "MANUAL_UNIT_PRICE_MAX",
    "MONEY_DIGITS",
    "OPEN_STATUSES",
    "SETTLEMENT_LINE_KINDS",
    "ZERO",
    "CreditNote",
    "CreditNoteLine",
    "CreditNoteSettlement",
    "CreditNoteStatus",
    "BillingRun",
    "BillingRunChunk",
    "BillingRunError",
    "BillingRunStatus",
    "PlanChangeKind",
    "RealtimeUsageCounter",
    "SubscriptionPlanChange",
    "COLLECTION_REASONS",
    "DUNNING_REASONS",
    "PAYMENT_REASONS",
    "DeliveryReason",
    "DeliverySettings",
    "DeliveryStatus",
    "DocumentDelivery",
    "INVOICE_MAIL_KINDS",
    "MailKind",
    "MailTemplate",
    "CustomerCreditEntry",
    "CustomerCreditKind",
    "Payment",
    "PaymentAllocation",
    "PaymentMethod",
    "DunningAfterFinal",
    "DunningReminder",
    "DunningReminderStatus",
    "DunningSettings",
    "default_dunning_steps",
    "validate_dunning_steps",
    "SPEND_AMOUNT_MAX",
    "SPEND_PERCENT_MAX",
    "SPEND_THRESHOLDS_MAX",
    "SpendAlert",
    "SpendAlertFiring",
    "SpendCap",
    "SpendCapMode",
    "SpendEmailStatus",
    "SpendThresholdKind",
    "SpendWatch",
]

"""Writes of invoicing: subscription lifecycle, billing runs, invoice states, numbering, credit notes.

Every public service is keyword-only, takes the time it acts at (``now`` / ``as_of``) and runs its
writes in one explicit transaction. Exactly once rests on the database: a partial unique constraint on
(subscription, period_start) for recurring invoices, a row lock on the subscription while its invoice
is written, and a savepoint that turns a lost race into a skip.

One module per domain verb (invoicing/README.md, "Package layout: ``invoicing/services/``"):
``numbering``, ``writer`` (the one invoice writer), ``settlement`` (prepaid settlement of real-time
subscriptions), ``runs``, ``catch_up`` (time bounds, background catch-up), ``lifecycle``,
``invoice_states``, ``manual_lines`` (manual line items for the next invoice or a draft), ``adjustments``
(subscription adjustments the rating applies), ``credit_notes``, ``delivery`` (e-mailing issued documents),
``dunning`` (reminders of overdue invoices), ``intervals`` (price intervals: negotiated rates), ``price_intervals`` (subscription-only intervals), ``plan_versions`` (moves between plan versions), ``thresholds``
(threshold invoices inside a period), ``upfront_payment`` and ``test_clocks``. The names below are the package's API: callers import them from ``invoicing.services``.
"""

from ..calculation import subscription_now
from ..receivables import InvoicePaymentError, invoice_payment_link_create
from .adjustments import subscription_adjustment_create, subscription_adjustment_delete
from .catch_up import CatchUp, TimeBoundError, subscription_start_check_bounds, test_clock_check_bounds
from .credit_notes import credit_note_issue, credit_note_void, invoice_refund_create
from .delivery import (
    DELIVERY_MAX_ATTEMPTS,
    delivery_retry_delay,
    document_deliveries_send_due,
    document_delivery_provider_event,
    document_delivery_queue,
    document_delivery_resend,
    document_delivery_send,
)
from .dunning import dunning_reminder_send, dunning_reminders_send_due, dunning_step_due
from .intervals import IntervalConflict, IntervalEdit, IntervalError, subscription_intervals_edit
from .invoice_states import (
    invoice_bill_late_usage,
    invoice_finalize,
    invoice_mark_paid,
    invoice_record_payment,
    invoice_refresh,
    invoice_void,
    invoices_finalize_due,
    tax_rate_now,
)
from .lifecycle import (
    SUBSCRIPTION_UPDATABLE,
    SubscriptionChangeError,
    SubscriptionTerminatedError,
    subscription_downgrade,
    subscription_reactivate,
    subscription_start,
    subscription_terminate,
    subscription_update,
    subscription_upgrade,
)
from .manual_lines import ManualLineConflict, ManualLineError, ManualLineInput, manual_line_item_create
from .numbering import credit_note_number_format, invoice_number_format
from .plan_versions import (
    VersionMigration,
    VersionMigrationConflict,
    VersionNotFound,
    subscription_version_migrate,
)
from .runs import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_ATTEMPTS,
    ChunkOutcome,
    DueInvoice,
    billing_run_create,
    billing_run_due,
    billing_run_execute,
    billing_run_process_chunk,
    billing_runs_close_stalled,
)
from .test_clocks import TestClockError, test_clock_advance, test_clock_catch_up, test_clock_create, test_clock_delete
from .thresholds import ThresholdSweep, subscription_threshold_evaluate, usage_thresholds_evaluate
from .upfront_payment import subscription_create_with_upfront_payment, subscription_opening_invoice
from .writer import invoice_insert, invoice_issue

__all__ = [
    "subscription_adjustment_create",
    "subscription_adjustment_delete",
    # price intervals (negotiated rates)
    "IntervalConflict",
    "IntervalEdit",
    "IntervalError",
    "subscription_intervals_edit",
    # manual line items
    "ManualLineConflict",
    "ManualLineError",
    "ManualLineInput",
    "manual_line_item_create",
    "VersionMigration",
    "VersionMigrationConflict",
    "VersionNotFound",
    "subscription_version_migrate",
    # dunning
    "dunning_reminder_send",
    "dunning_reminders_send_due",
    "dunning_step_due",
    # re-exported: a subscription's current time (its test clock's, else the real one), as callers read it
    "subscription_now",
    # numbering
    "invoice_number_format",
    "credit_note_number_format",
    # writer
    "invoice_insert",
    "invoice_issue",
    # runs
    "DEFAULT_CHUNK_SIZE",
    "MAX_CHUNK_ATTEMPTS",
    "ChunkOutcome",
    "DueInvoice",
    "billing_run_create",
    "billing_run_execute",
    "billing_run_process_chunk",
    "billing_runs_close_stalled",
    "billing_run_due",
    # catch_up
    "TimeBoundError",
    "CatchUp",
    "subscription_start_check_bounds",
    "test_clock_check_bounds",
    # lifecycle
    "SUBSCRIPTION_UPDATABLE",
    "SubscriptionChangeError",
    "SubscriptionTerminatedError",
    "subscription_start",
    "subscription_terminate",
    "subscription_reactivate",
    "subscription_upgrade",
    "subscription_downgrade",
    "subscription_update",
    # invoice_states
    "InvoicePaymentError",
    "invoice_refresh",
    "invoice_finalize",
    "invoices_finalize_due",
    "invoice_mark_paid",
    "invoice_record_payment",
    "invoice_payment_link_create",
    "invoice_void",
    "invoice_bill_late_usage",
    "tax_rate_now",
    # credit_notes
    "credit_note_issue",
    # delivery
    "DELIVERY_MAX_ATTEMPTS",
    "delivery_retry_delay",
    "document_delivery_queue",
    "document_delivery_resend",
    "document_delivery_send",
    "document_deliveries_send_due",
    "document_delivery_provider_event",
    "credit_note_void",
    "invoice_refund_create",
    # upfront_payment
    "subscription_opening_invoice",
    "subscription_create_with_upfront_payment",
    # thresholds (progressive billing)
    "ThresholdSweep",
    "subscription_threshold_evaluate",
    "usage_thresholds_evaluate",
    # test_clocks
    "TestClockError",
    "test_clock_create",
    "test_clock_advance",
    "test_clock_catch_up",
    "test_clock_delete",
]

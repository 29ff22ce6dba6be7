"""Demo activity: weeks of usage for the demo customers and last month's invoices, built idempotently.

The demo catalog (``catalog.demo``, ``manage.py demo_catalog``) has merchants, plans and subscriptions but
no usage. This adds what makes the billing home worth opening: usage events for every demo subscription
from the first of last month up to ``now`` (4 to 8 weeks), then one billing run that closes every period
ended by ``now`` through the same code as beat, and issues every other draft it wrote. The home then shows
issued revenue, drafts still waiting out their grace period, and a usage chart.

Nothing is random between runs: a day's events of one customer and event type come from a generator
seeded by (customer, event type, day), and each carries an idempotency key made of the same parts, so
running again with a later ``now`` replays the events already stored (metering ignores them) and only adds
the ones after the previous ``now``. The billing run happens once a calendar month (skipped when a demo
run as of this month exists), so a second run in the same month changes nothing.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from catalog.demo import CLOUD_ANALYTICS, DEMO_MERCHANT_NAMES, DEMO_MODELS, first_of_month, first_of_previous_month
from catalog.models import BillableMetric, Merchant, MetricFilterOperator, Subscription, SubscriptionStatus
from catalog.pricing.currency import format_money
from metering.services import ACCEPTED, MAX_BATCH_EVENTS, events_ingest
from wallets.models import CreditPurchaseKind

from .intervals import negotiated_rate_add, subscription_timeline
from .models import BillingRun, Invoice, InvoiceStatus
from .one_off_invoices import credit_purchase_create
from .receivables import invoice_pay_in_full
from .services import IntervalConflict, IntervalEdit, billing_run_execute, invoice_finalize, subscription_intervals_edit

DEMO_TRIGGER = "demo"
EVENT_SOURCE = "https://demo.meterline.example"
DAY = timedelta(days=1)
# The data platform's Reserved plan sells pre-purchased query compute at 40 % off: $12,000 of compute credit
# invoiced at 12,000 × (100 − 40) / 100 = $7,200.00, paid at once (out of band), credited when paid.
RESERVED_COMPUTE = Decimal("12000")
RESERVED_DISCOUNT = Decimal("40")
RESERVED_KEY = "demo-reserved-compute"
# The LLM Enterprise plan's negotiated rates for Acme AI ($0.0015 and $0.0045 per 1K tokens instead of the list
# $0.002 and $0.006), set through the API's price intervals (``subscription_intervals_edit``, the service of
# POST /v0/subscriptions/{id}/intervals) before the first period is billed.
NEGOTIATED_CUSTOMER, NEGOTIATED_PLAN = "acme-ai", "Enterprise"
NEGOTIATED_RATES = {"input_tokens": "0.0000015", "output_tokens": "0.0000045"}


class DemoCatalogMissing(Exception):
    """The demo merchants are not there: ``manage.py demo_catalog`` has not run."""


@dataclass
class DemoActivitySummary:
    events_submitted: int = 0
    events_added: int = 0
    billing_run: BillingRun | None = None
    invoices_issued: int = 0
    reserved_invoice: Invoice | None = None  # sold by this run
    negotiated: Subscription | None = None  # its negotiated rates set by this run

    def lines(self) -> Iterable[str]:
        yield (
            f"Demo usage: {self.events_added} events added, {self.events_submitted - self.events_added} already there."
        )
        run = self.billing_run
        if run is None:
            yield "Demo billing: already run this month, nothing to do."
        else:
            yield (
                f"Demo billing run {run.pk} as of {run.as_of:%Y-%m-%d %H:%M} UTC: {run.invoices_created} invoices "
                f"created, {self.invoices_issued} drafts issued (the others wait out their grace period)."
            )
        if self.negotiated is not None:
            rates = ", ".join(f"{key} {rate}" for key, rate in NEGOTIATED_RATES.items())
            yield f"Demo negotiated rates (price intervals API): {self.negotiated.name}: {rates} per token."
        if self.reserved_invoice is not None:
            invoice = self.reserved_invoice
            yield (
                f"Demo reserved capacity: {invoice.customer.name} bought query compute on {invoice.number} "
                f"({format_money(invoice.total, invoice.currency)}, {invoice.status})."
            )


@dataclass(frozen=True)
class _EventShape:
    """What one event of a type carries for a subscription: the value paths its metrics read, fixed filters."""

    event_type: str
    value_paths: tuple[str, ...]
    fixed: tuple[tuple[str, str], ...]
    models: tuple[str, ...] = ()  # a metric of the type groups by ``model``: events alternate between these


def _shapes(metrics: Iterable[BillableMetric]) -> list[_EventShape]:
    """One shape per event type: an event feeds every metric of its type (e.g. input and output tokens)."""
    paths: dict[str, set[str]] = defaultdict(set)
    fixed: dict[str, dict[str, str]] = defaultdict(dict)
    by_model: set[str] = set()
    for metric in metrics:
        if isinstance(metric.group_by, dict) and metric.group_by.get("model") == "$.model":
            by_model.add(metric.event_type)
        paths[metric.event_type].add((metric.value_property or "$.value").removeprefix("$.").split(".")[0])
        for metric_filter in metric.filters.all():
            if metric_filter.operator in (MetricFilterOperator.EQUALS, MetricFilterOperator.IN):
                fixed[metric.event_type][metric_filter.property_path.removeprefix("$.")] = str(
                    (metric_filter.values or [""])[0]
                )
    return [
        _EventShape(
            event_type,
            tuple(sorted(paths[event_type])),
            tuple(sorted(fixed[event_type].items())),
            DEMO_MODELS if event_type in by_model else (),
        )
        for event_type in sorted(paths)
    ]


def _day_events(*, customer_key: str, subject: str, shape: _EventShape, day: datetime) -> list[dict]:
    """A whole UTC day of one customer's events of one type: every 2 to 9 hours, values 1 to 400."""
    rng = random.Random(f"{customer_key}|{shape.event_type}|{day:%Y-%m-%d}")
    moment = day + timedelta(minutes=rng.randint(0, 8 * 60))
    events = []
    while moment < day + DAY:
        data = {path: rng.randint(1, 400) for path in shape.value_paths}
        data.update(shape.fixed)
        if shape.models:  # every third event on the large model (no draw: the timestamps stay as they were)
            data["model"] = shape.models[1] if len(events) % 3 == 0 else shape.models[0]
        events.append(
            {
                "type": shape.event_type,
                "source": EVENT_SOURCE,
                "subject": subject,
                "timestamp": moment.isoformat(),
                "idempotencyKey": f"demo-{customer_key}-{shape.event_type}-{day:%Y%m%d}-{len(events)}",
                "data": data,
            }
        )
        moment += timedelta(minutes=rng.randint(2 * 60, 9 * 60))
    return events


def _usage_events(subscription: Subscription, *, since: datetime, now: datetime) -> list[dict]:
    metrics = BillableMetric.objects.filter(prices__plan=subscription.plan).distinct().prefetch_related("filters")
    start = max(since, subscription.started_at)
    events = []
    for shape in _shapes(metrics):
        day = since
        while day < now:
            for event in _day_events(
                customer_key=subscription.customer.external_id or subscription.customer_id,
                subject=subscription.customer_id,
                shape=shape,
                day=day,
            ):
                # Whole days are generated, so the events before ``now`` never depend on ``now``.
                if start <= datetime.fromisoformat(event["timestamp"]) <= now:
                    events.append(event)
            day += DAY
    return events


def demo_activity_build(*, now: datetime) -> DemoActivitySummary:
    """Add the demo customers' usage since the first of last month up to ``now``, then (once a month) close
    the periods ended by ``now`` and issue every other draft of that run. Idempotent: see the module doc."""
    merchants = list(Merchant.objects.filter(name__in=DEMO_MERCHANT_NAMES).order_by("name"))
    if not merchants:
        raise DemoCatalogMissing("No demo merchant found: run `manage.py demo_catalog` first.")
    now = now.astimezone(UTC)
    since = first_of_previous_month(now)
    summary = DemoActivitySummary()
    subscriptions = list(
        Subscription.objects.filter(merchant__in=merchants, status=SubscriptionStatus.ACTIVE, test_clock__isnull=True)
        .select_related("customer", "plan", "merchant")
        .order_by("merchant__name", "customer__external_id", "pk")
    )
    summary.negotiated = _enterprise_rates_negotiated(subscriptions, now=now)
    for merchant in merchants:
        events = [
            event
            for subscription in subscriptions
            if subscription.merchant_id == merchant.pk
            for event in _usage_events(subscription, since=since, now=now)
        ]
        for offset in range(0, len(events), MAX_BATCH_EVENTS):
            outcome = events_ingest(merchant=merchant, raw_events=events[offset : offset + MAX_BATCH_EVENTS], now=now)
            summary.events_submitted += len(outcome.results)
            summary.events_added += outcome.counts[ACCEPTED]

    if BillingRun.objects.filter(trigger=DEMO_TRIGGER, as_of__gte=first_of_month(now)).exists():
        summary.reserved_invoice = _reserved_compute_sold(subscriptions, now=now)
        return summary
    summary.billing_run = billing_run_execute(
        as_of=now, trigger=DEMO_TRIGGER, subscription_ids=[s.pk for s in subscriptions], clock=lambda: now
    )
    # Every other draft is issued now; the rest stay drafts in their grace period (beat issues them when it
    # ends), so the home shows both issued revenue and open drafts.
    drafts = summary.billing_run.invoices.filter(status=InvoiceStatus.DRAFT).order_by(
        "merchant__name", "customer__external_id", "period_start"
    )
    for index, invoice in enumerate(drafts):
        if index % 2 == 0:
            invoice_finalize(invoice=invoice, now=now)
            summary.invoices_issued += 1
    summary.reserved_invoice = _reserved_compute_sold(subscriptions, now=now)
    return summary


def _enterprise_rates_negotiated(subscriptions: list[Subscription], *, now: datetime) -> Subscription | None:
    """Acme AI's Enterprise subscription gets its negotiated token rates as an interval edit (a commercial
    change), from its first moment not yet invoiced; None when they are there already (or a draft of it is open,
    which refuses every edit until issued)."""
    enterprise = [
        s for s in subscriptions if s.customer.external_id == NEGOTIATED_CUSTOMER and s.plan.name == NEGOTIATED_PLAN
    ]
    if not enterprise:
        return None
    subscription = enterprise[0]
    timeline = subscription_timeline(subscription=subscription)
    if set(NEGOTIATED_RATES) <= set(timeline.overrides):
        return None
    add = [
        negotiated_rate_add(timeline, key, rate)
        for key, rate in NEGOTIATED_RATES.items()
        if key not in timeline.overrides
    ]
    edit = IntervalEdit(add=add, change_reason="commercial", description="Enterprise agreement: negotiated token rates")
    try:
        subscription_intervals_edit(subscription=subscription, edit=edit, now=now)
    except IntervalConflict:
        return None
    return subscription


def _reserved_compute_sold(subscriptions: list[Subscription], *, now: datetime) -> Invoice | None:
    """The Reserved plan's customer buys query compute at 40 % off on a one-off invoice, paid out of band (so
    the credit lot exists): once (an idempotency key); None when it was sold by an earlier run."""
    reserved = [s for s in subscriptions if s.merchant.name == CLOUD_ANALYTICS and s.plan.name == "Reserved"]
    if not reserved:
        return None
    subscription = reserved[0]
    compute = BillableMetric.objects.get(merchant_id=subscription.merchant_id, name="Query compute")
    sale = credit_purchase_create(
        customer=subscription.customer,
        kind=CreditPurchaseKind.RESERVED,
        currency=subscription.plan.currency,
        amount=RESERVED_COMPUTE,
        discount_percent=RESERVED_DISCOUNT,
        metric_ids=[compute.pk],
        idempotency_key=RESERVED_KEY,
        description="Reserved query compute (40 % off)",
        subscription=subscription,
        now=now,
    )
    if sale.replayed:
        return None
    return invoice_pay_in_full(invoice=sale.invoice, at=now)

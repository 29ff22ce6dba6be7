"""Revenue, cost and margin per customer and per product over a period.

- **Revenue** is invoiced revenue net of credit notes, net of tax: the ``subtotal`` of issued and paid invoices
  less the ``subtotal`` of issued (not voided) credit notes. Drafts and voided invoices are not revenue. The
  product is the invoice's plan's product. Two bases place it in [start, end):
  ``issued`` (the API's default, as reporting's revenue chart): invoices by ``issued_at``, credit notes by
  their own ``issued_at``; ``billingPeriod``: invoice lines whose service period starts in [start, end) and
  the credit notes on those lines (costs/placement.py: a fee billed in advance counts in the period it
  bills, the usage billed in arrears beside it in the period before), so that revenue lines up with the cost
  of the same period's usage (the billing home).
- **Cost** is each live cost of the currency metered over [start, end) per customer
  (``selectors.cost_by_customer``: one query per cost); a product's cost is the sum of its costs over its
  customers.
- **Profit** = revenue − cost; **margin** = profit / revenue in percent (None when there is no revenue).

Amounts are summed exactly and rounded once to the currency's minor unit. One query for revenue (two
to four grouped selects, UNION ALL), one for the costs, one per cost (at most ``MAX_COSTS_PER_MERCHANT`` a merchant).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import DecimalField, F, Sum

from catalog.models import Customer, Product, Subscription, SubscriptionStatus
from catalog.pricing import round_money
from catalog.selectors import prices_for_subscriptions
from invoicing.models import (
    MONEY_DIGITS,
    OPEN_STATUSES,
    CreditNote,
    CreditNoteStatus,
    Invoice,
    InvoiceStatus,
)

from . import placement, selectors
from .models import Cost

ZERO = Decimal("0")
HUNDRED = Decimal("100")
REVENUE_STATUSES = (*OPEN_STATUSES, InvoiceStatus.PAID)
MONEY = DecimalField(**MONEY_DIGITS)


@dataclass(frozen=True)
class MarginRow:
    key: str  # customer or product id
    name: str
    revenue: Decimal
    cost: Decimal
    cost_recorded: bool  # at least one cost event was attributed to it

    @property
    def profit(self) -> Decimal:
        return self.revenue - self.cost

    @property
    def margin_pct(self) -> Decimal | None:
        if not self.revenue:
            return None
        return (self.profit * HUNDRED / self.revenue).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class Margins:
    currency: str
    start: datetime
    end: datetime
    by_customer: list[MarginRow]  # every customer with revenue or cost, by profit descending
    by_product: list[MarginRow]
    cost_count: int  # live costs of the currency counted
    more_costs: bool = False  # more costs exist than ``max_costs``: they were not counted
    billed: bool = False  # an invoice or credit note was placed in the period (even at zero)
    costs: tuple[Cost, ...] = ()  # the costs counted

    @property
    def revenue(self) -> Decimal:
        return sum((r.revenue for r in self.by_customer), ZERO)

    @property
    def cost(self) -> Decimal:
        return sum((r.cost for r in self.by_customer), ZERO)


ISSUED_BASIS = "issued"
BILLING_PERIOD_BASIS = "billingPeriod"
BASES = (ISSUED_BASIS, BILLING_PERIOD_BASIS)


def revenue_by_customer_product(
    *,
    currency: str,
    start: datetime,
    end: datetime,
    merchant_ids: Collection[str] | None = None,
    basis: str = ISSUED_BASIS,
) -> dict[tuple[str, str], Decimal]:
    """(customer id, product id) → revenue net of credit notes over [start, end) on ``basis``, rounded to
    the currency's minor unit. One query."""
    invoices = Invoice.objects.filter(currency=currency, status__in=REVENUE_STATUSES)
    notes = CreditNote.objects.filter(currency=currency, status=CreditNoteStatus.ISSUED)
    if merchant_ids is not None:
        invoices = invoices.filter(merchant_id__in=merchant_ids)
        notes = notes.filter(merchant_id__in=merchant_ids)
    # (queryset, path from a row to its invoice or credit note, the amount it adds: + billed, − credited)
    if basis == BILLING_PERIOD_BASIS:
        # Invoice and credit-note lines, each at the period it bills (costs/placement.py), and the documents
        # without lines whole at their (invoice's) billing period.
        notes = notes.filter(invoice__status__in=REVENUE_STATUSES)
        invoice_parts, note_parts = placement.billing_period_parts(invoices, notes)
        # a credit note's customer and product are its invoice's
        parts = [(q, path, "billed") for q, path in invoice_parts]
        parts += [(q, f"{path}invoice__", "credited") for q, path in note_parts]
    else:
        parts = [
            (invoices.alias(placed_at=F("issued_at"), billed=F("subtotal")), "", "billed"),
            (notes.alias(placed_at=F("issued_at"), credited=F("subtotal")), "invoice__", "credited"),
        ]
    selects = [
        queryset.filter(placed_at__gte=start, placed_at__lt=end)
        .order_by()
        .values(billed_customer=F(f"{path}customer_id"), billed_product=F(f"{path}plan__product_id"))
        .annotate(amount=Sum(F(value) if value == "billed" else -F(value), output_field=MONEY))
        for queryset, path, value in parts
    ]
    result: dict[tuple[str, str], Decimal] = {}
    for row in selects[0].union(*selects[1:], all=True):
        key = (row["billed_customer"], row["billed_product"])
        result[key] = result.get(key, ZERO) + (row["amount"] or ZERO)
    # SQLite sums decimals as floats: amounts are in minor units, so rounding restores the exact sum.
    return {key: round_money(Decimal(value), currency) for key, value in result.items()}


def margins(
    *,
    currency: str,
    start: datetime,
    end: datetime,
    merchant_ids: Collection[str] | None = None,
    basis: str = ISSUED_BASIS,
    max_costs: int | None = None,
) -> Margins:
    """Revenue, cost and margin per customer and per product over [start, end) in ``currency``
    (``merchant_ids`` None: every merchant). ``max_costs`` counts only the first costs (by creation), for a
    page that must stay within a fixed number of queries. Raises selectors.PeriodError for a period too long."""
    selectors.check_period(start=start, end=end)
    revenue = revenue_by_customer_product(
        currency=currency, start=start, end=end, merchant_ids=merchant_ids, basis=basis
    )
    live = selectors.costs_live(merchant_ids=merchant_ids, currency=currency)
    costs: list[Cost] = list(live if max_costs is None else live[: max_costs + 1])
    more_costs = max_costs is not None and len(costs) > max_costs
    costs = costs[:max_costs] if more_costs else costs
    customer_cost: dict[str, Decimal] = {}
    product_cost: dict[str, Decimal] = {}
    for cost in costs:
        for customer_id, amount in selectors.cost_by_customer(cost=cost, start=start, end=end).items():
            customer_cost[customer_id] = customer_cost.get(customer_id, ZERO) + amount
            product_cost[cost.product_id] = product_cost.get(cost.product_id, ZERO) + amount
    customer_revenue: dict[str, Decimal] = {}
    product_revenue: dict[str, Decimal] = {}
    for (customer_id, product_id), amount in revenue.items():
        customer_revenue[customer_id] = customer_revenue.get(customer_id, ZERO) + amount
        product_revenue[product_id] = product_revenue.get(product_id, ZERO) + amount
    customer_ids = set(customer_revenue) | set(customer_cost)
    product_ids = set(product_revenue) | set(product_cost)
    customer_names = dict(Customer.objects.filter(pk__in=customer_ids).values_list("id", "name"))
    product_names = dict(Product.objects.filter(pk__in=product_ids).values_list("id", "name"))
    return Margins(
        currency=currency,
        start=start,
        end=end,
        by_customer=_rows(customer_revenue, customer_cost, customer_names, currency),
        by_product=_rows(product_revenue, product_cost, product_names, currency),
        cost_count=len(costs),
        more_costs=more_costs,
        billed=bool(revenue),
        costs=tuple(costs),
    )


def _rows(
    revenue: dict[str, Decimal], cost: dict[str, Decimal], names: dict[str, str], currency: str
) -> list[MarginRow]:
    rows = [
        MarginRow(
            key=key,
            name=names.get(key, key),
            revenue=revenue.get(key, ZERO),
            cost=round_money(cost.get(key, ZERO), currency),
            cost_recorded=key in cost,
        )
        for key in set(revenue) | set(cost)
    ]
    rows.sort(key=lambda r: (-r.profit, -r.revenue, r.name, r.key))
    return rows


# --- recurring revenue -------------------------------------------------------------------------------

MONTHS_PER_CADENCE = {"P1M": Decimal(1), "P3M": Decimal(3), "P1Y": Decimal(12)}


@dataclass(frozen=True)
class RecurringRevenue:
    currency: str
    mrr: Decimal  # rounded to the currency's minor unit
    subscriptions: int  # active subscriptions counted
    as_of: datetime  # the instant they were active at

    @property
    def arr(self) -> Decimal:
        return self.mrr * 12


def recurring_revenue(*, currency: str, now: datetime, merchant_ids: Collection[str] | None = None) -> RecurringRevenue:
    """MRR: the recurring fees of the subscriptions active at ``now`` (started, not ended or terminated, out
    of trial) on plans in ``currency``, each fee's unit price × quantity per its cadence (the price's, else
    the plan's) brought to a month (P3M ÷ 3, P1Y ÷ 12), with the customer's negotiated rates in place
    (``catalog.selectors.prices_for_subscriptions``: the plan's current default version). One-off fees
    (P0D) and usage prices are not recurring. ARR = 12 × MRR. A fixed number of queries (the subscriptions,
    then their prices), rounded once."""
    subscriptions = (
        Subscription.objects.filter(
            status=SubscriptionStatus.ACTIVE, plan__currency=currency, started_at__lte=now, terminated_at__isnull=True
        )
        .exclude(ending_at__lte=now)
        .exclude(trial_ends_at__gt=now)
        .select_related("plan")
        .only("id", "plan_id", "customer_id", "plan__billing_cadence")
    )
    if merchant_ids is not None:
        subscriptions = subscriptions.filter(merchant_id__in=merchant_ids)
    subscriptions = list(subscriptions)
    prices = prices_for_subscriptions(subscriptions) if subscriptions else {}
    monthly = ZERO
    for subscription in subscriptions:
        for price in prices[subscription.pk]:
            if price.fee_id is None or price.unit_price is None:
                continue
            months = MONTHS_PER_CADENCE.get(price.billing_cadence or subscription.plan.billing_cadence)
            if months is None:
                continue
            monthly += price.unit_price * price.quantity / months
    return RecurringRevenue(
        currency=currency, mrr=round_money(monthly, currency), subscriptions=len(subscriptions), as_of=now
    )

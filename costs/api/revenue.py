"""``/v0/revenue`` (getRevenue) and ``/v0/revenue/accounts`` (getRevenueAccounts), wire-compatible with the
client's ``revenue`` namespace; the figures are ``costs.revenue``'s (its docstring defines them)."""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from catalog.api.fields import check_merchant, money_string
from catalog.api.views import CatalogApi
from catalog.models import Customer
from core.api.fields import QueryIdField, parameter_combination_error, require_query
from core.api.pagination import MAX_OFFSET, page_params
from core.api.serializers import ErrorOutput

from .. import margin, revenue, selectors
from . import serializers as out
from .serializers import CurrencyCode, UtcDateTime

ERRORS = {code: ErrorOutput for code in (400, 401, 403, 404)}
TAGS = ["revenue"]
GROUP_LIMITS = {"plan": 5, "customer": 25}  # groups shown, the last being "other" when there are more
ZERO = Decimal("0")


def _category(category: revenue.Category, currency: str) -> dict:
    return {"amount": money_string(category.amount, currency), "count": category.count}


def _invoices(summary: revenue.CurrencySummary) -> dict:
    code = summary.currency
    return {
        "issued": _category(summary.issued, code),
        "outstanding": _category(summary.outstanding, code),
        "paid": _category(summary.paid, code),
        "writtenOff": _category(revenue.Category(), code),
    }


def _payments(summary: revenue.CurrencySummary) -> dict:
    code = summary.currency
    return {
        "completedAmount": money_string(summary.payments.amount, code),
        "completedCount": summary.payments.count,
        "pendingAmount": money_string(ZERO, code),
        "pendingCount": 0,
        "expiredAmount": money_string(ZERO, code),
        "expiredCount": 0,
    }


OTHER = "other"  # the client's key for the groups folded together


def _trend(summary: revenue.CurrencySummary, buckets, folded: dict[str, tuple[str, str]] | None = None) -> list[dict]:
    """One bucket per start, zeros included; with ``folded`` (a grouping: group key → the key and label it is
    shown under), each bucket's ``groupBreakdown``: one entry per shown group with an invoice or a credit
    note in the bucket, in the order of the groups, ``other`` last."""
    code = summary.currency
    order = {key: index for index, key in enumerate(dict.fromkeys(shown for shown, _ in (folded or {}).values()))}
    rows = []
    for start in buckets:
        figures = summary.trend.get(start, {})
        issued = figures.get("issued", ZERO)
        row = {
            "timestamp": start,
            "revenue": money_string(issued - figures.get("credited", ZERO), code),
            "issuedInvoices": money_string(issued, code),
            "writtenOffInvoices": money_string(ZERO, code),
            "completedPayments": money_string(figures.get("payments", ZERO), code),
            "rebates": money_string(ZERO, code),
        }
        if folded is not None:
            entries: dict[str, dict] = {}
            for key, amounts in summary.group_trend.get(start, {}).items():
                shown, label = folded[key]
                entry = entries.setdefault(shown, {"label": label, "issued": ZERO, "credited": ZERO})
                entry["issued"] += amounts.get("issued", ZERO)
                entry["credited"] += amounts.get("credited", ZERO)
            row["groupBreakdown"] = [
                {
                    "groupKey": shown,
                    "groupLabel": entry["label"],
                    "revenue": money_string(entry["issued"] - entry["credited"], code),
                    "issuedInvoices": money_string(entry["issued"], code),
                }
                for shown, entry in sorted(entries.items(), key=lambda item: order[item[0]])
            ]
        rows.append(row)
    return rows


def _ranked(
    summary: revenue.CurrencySummary, group_by: str
) -> tuple[list[tuple[str, dict]], dict[str, tuple[str, str]]]:
    """The groups shown, ranked by net revenue (the last ``other`` folding the rest), and where each group
    counts (its key and label, or ``other``). Only a group invoiced in the window is ranked: one with only a
    credit note counts under ``other``, as the client says of the trend, so that the breakdown and the
    trend fold the same groups."""
    ranked = sorted(
        ((key, group) for key, group in summary.groups.items() if group["count"]),
        key=lambda item: (-item[1]["revenue"], item[1]["label"] or "", item[0]),
    )
    refunded_only = [(key, group) for key, group in summary.groups.items() if not group["count"]]
    limit = GROUP_LIMITS[group_by]
    if len(ranked) + (1 if refunded_only else 0) <= limit:
        shown, rest = ranked, refunded_only
    else:
        shown, rest = ranked[: limit - 1], ranked[limit - 1 :] + refunded_only
    folded = {key: (key, group["label"] or key) for key, group in shown}
    folded |= {key: (OTHER, "Other") for key, _ in rest}
    if rest:
        other = {
            "label": "Other",
            "outstanding": revenue.Category(
                sum((g["outstanding"].amount for _, g in rest), ZERO), sum(g["outstanding"].count for _, g in rest)
            ),
            "paid": revenue.Category(
                sum((g["paid"].amount for _, g in rest), ZERO), sum(g["paid"].count for _, g in rest)
            ),
        }
        shown = [*shown, (OTHER, other)]
    return shown, folded


def _groups(summary: revenue.CurrencySummary, shown: list[tuple[str, dict]]) -> list[dict]:
    code = summary.currency
    return [
        {
            "groupKey": key,
            "groupLabel": group["label"] or key,
            "outstanding": _category(group["outstanding"], code),
            "paid": _category(group["paid"], code),
            "writtenOff": _category(revenue.Category(), code),
        }
        for key, group in shown
    ]


class RevenueQuery(serializers.Serializer):
    startTime = UtcDateTime()
    endTime = UtcDateTime()
    bucketWidth = serializers.ChoiceField(choices=["hour", "day", "week"], required=False, default="day")
    merchantId = QueryIdField()
    customerId = QueryIdField()
    currency = CurrencyCode(required=False)
    groupBy = serializers.ChoiceField(choices=["plan", "customer", "currency"], required=False)
    periodBasis = serializers.ChoiceField(choices=["issued", "billingPeriod"], required=False, default="issued")


class RevenueApi(CatalogApi):
    @extend_schema(
        operation_id="getRevenue",
        tags=TAGS,
        parameters=[
            OpenApiParameter("startTime", {"type": "string", "format": "date-time"}, required=True),
            OpenApiParameter(
                "endTime",
                {"type": "string", "format": "date-time"},
                required=True,
                description=f"Excluded; after startTime, at most {selectors.MAX_RANGE_DAYS} days later, and at most "
                f"{selectors.MAX_WINDOWS} buckets of bucketWidth (otherwise 400 parameter_combination).",
            ),
            OpenApiParameter("bucketWidth", str, enum=["hour", "day", "week"]),
            OpenApiParameter("merchantId", str),
            OpenApiParameter("customerId", str, description="One of the merchant's customers (else 404)."),
            OpenApiParameter(
                "subscriptionIds",
                {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "maxItems": revenue.MAX_SUBSCRIPTION_IDS,
                },
                explode=True,
            ),
            OpenApiParameter("currency", out.CURRENCY_QUERY_SCHEMA),
            OpenApiParameter("groupBy", str, enum=["plan", "customer", "currency"]),
            OpenApiParameter("periodBasis", str, enum=["issued", "billingPeriod"]),
        ],
        responses={200: out.RevenueSummaryOutput, **ERRORS},
    )
    def get(self, request):
        serializer = RevenueQuery(data=request.query_params.dict())
        serializer.is_valid(raise_exception=True)
        query = serializer.validated_data
        check_merchant(request, query.get("merchantId"))
        merchant = self.merchant
        subscription_ids = request.query_params.getlist("subscriptionIds") or None
        if subscription_ids is not None and len(subscription_ids) > revenue.MAX_SUBSCRIPTION_IDS:
            raise exceptions.ValidationError(
                {"subscriptionIds": [f"At most {revenue.MAX_SUBSCRIPTION_IDS} subscription ids."]}
            )
        if "customerId" in query and not Customer.objects.filter(merchant=merchant, pk=query["customerId"]).exists():
            raise exceptions.NotFound(f"No customer {query['customerId']} in your organization.")
        group_by = query.get("groupBy")
        currency = (query.get("currency") or ("" if group_by == "currency" else merchant.default_currency)).upper()
        start, end, width = query["startTime"], query["endTime"], query["bucketWidth"]
        try:
            summaries = revenue.revenue_summary(
                merchant=merchant,
                start=start,
                end=end,
                bucket_width=width,
                currency=currency or None,
                customer_id=query.get("customerId"),
                subscription_ids=subscription_ids,
                group_by=group_by,
                basis=query["periodBasis"],
            )
        except selectors.PeriodError as error:
            field = {"to": "endTime", "window": "bucketWidth"}.get(error.field, error.field)
            raise parameter_combination_error(
                field, str(error).replace("to must be after from", "endTime must be after startTime")
            )
        buckets = revenue.bucket_starts(start=start, end=end, bucket_width=width)
        body: dict = {}
        if not any(summary.issued.count or summary.credit_count for summary in summaries.values()):
            # The window held nothing: say where this caller's revenue lies (the client's revenueRange).
            extent = revenue.revenue_extent(
                merchant=merchant,
                currency=currency or None,
                customer_id=query.get("customerId"),
                subscription_ids=subscription_ids,
            )
            body["revenueRange"] = extent and {"from": extent[0], "to": extent[1]}
        if group_by == "currency":
            primary = merchant.default_currency
            codes = sorted(summaries, key=lambda code: (code != primary, code))
            body["currencyBreakdown"] = [
                {
                    "currency": code,
                    "netRevenue": money_string(summaries[code].net_revenue, code),
                    "invoices": _invoices(summaries[code]),
                    "payments": _payments(summaries[code]),
                    "trend": _trend(summaries[code], buckets),
                }
                for code in codes
            ]
            return Response(out.RevenueSummaryOutput(body).data)
        summary = summaries.get(currency) or revenue.CurrencySummary(currency=currency)
        shown, folded = _ranked(summary, group_by) if group_by else ([], None)
        body.update(
            {
                "currency": currency,
                "netRevenue": money_string(summary.net_revenue, currency),
                "totalRefunds": money_string(summary.refunded, currency),
                "refundCount": summary.credit_count,
                "totalRebates": money_string(ZERO, currency),
                "rebateCount": 0,
                "invoices": _invoices(summary),
                "payments": _payments(summary),
                "trend": _trend(summary, buckets, folded),
            }
        )
        if group_by:
            body["groupBreakdown"] = _groups(summary, shown)
        return Response(out.RevenueSummaryOutput(body).data)


def _outstanding(block: revenue.Outstanding, currency: str) -> dict:
    return {
        "amount": money_string(block.amount, currency),
        "count": block.count,
        "awaitingPayment": {"amount": money_string(block.awaiting_amount, currency), "count": block.awaiting_count},
        "paymentFailed": {"amount": money_string(block.failed_amount, currency), "count": block.failed_count},
    }


class RevenueAccountsApi(CatalogApi):
    @extend_schema(
        operation_id="getRevenueAccounts",
        tags=TAGS,
        parameters=[
            OpenApiParameter("merchantId", str, required=True),
            OpenApiParameter(
                "customerIds",
                {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": revenue.MAX_CUSTOMER_IDS},
                explode=True,
                description="The merchant's customers (an unknown one: 404).",
            ),
            OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 100}, description="Default 50."),
            OpenApiParameter("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}),
        ],
        responses={200: out.RevenueAccountsOutput, **ERRORS},
    )
    def get(self, request):
        check_merchant(request, require_query(request, "merchantId"))
        limit, offset = page_params(request, default_limit=50)
        customer_ids = request.query_params.getlist("customerIds") or None
        if customer_ids is not None:
            if len(customer_ids) > revenue.MAX_CUSTOMER_IDS:
                raise exceptions.ValidationError({"customerIds": [f"At most {revenue.MAX_CUSTOMER_IDS} customer ids."]})
            missing = revenue.customers_missing(merchant=self.merchant, customer_ids=customer_ids)
            if missing:
                raise exceptions.NotFound(f"No customer {missing[0]} in your organization.")
        rows, total, totals = revenue.revenue_accounts(
            merchant=self.merchant, customer_ids=customer_ids, limit=limit, offset=offset
        )
        return Response(
            out.RevenueAccountsOutput(
                {
                    "totals": [{"currency": code, "outstanding": _outstanding(block, code)} for code, block in totals],
                    "data": [
                        {
                            "customerId": row.customer_id,
                            "customerName": row.customer_name,
                            "currency": row.currency,
                            "outstanding": _outstanding(row.outstanding, row.currency),
                        }
                        for row in rows
                    ],
                    "pagination": {"limit": limit, "offset": offset, "total": total},
                }
            ).data
        )


class RecurringRevenueApi(CatalogApi):
    """Our extension: MRR and ARR, by ``costs.margin.recurring_revenue``, the billing home's rule."""

    @extend_schema(
        operation_id="getRecurringRevenue",
        tags=TAGS,
        summary="Monthly and annual recurring revenue (Meterline extension)",
        description="The recurring fees of the subscriptions active at asOf (started, not ended or terminated, "
        "out of trial) on plans in currency, each brought to a month (P3M ÷ 3, P1Y ÷ 12) with negotiated rates "
        "in place; one-off fees and usage are not recurring. arr = 12 × mrr. Other currencies are not "
        "converted: ask for each. The billing home shows the same figures.",
        parameters=[
            OpenApiParameter("merchantId", str),
            OpenApiParameter(
                "currency",
                out.CURRENCY_QUERY_SCHEMA,
                description="Default: the merchant's default currency.",
            ),
            OpenApiParameter("asOf", {"type": "string", "format": "date-time"}, description="Default: now."),
        ],
        responses={200: out.RecurringRevenueOutput, **ERRORS},
    )
    def get(self, request):
        serializer = out.RecurringRevenueQuery(data=request.query_params.dict())
        serializer.is_valid(raise_exception=True)
        query = serializer.validated_data
        check_merchant(request, query.get("merchantId"))
        merchant = self.merchant
        recurring = margin.recurring_revenue(
            currency=(query.get("currency") or merchant.default_currency).upper(),
            now=query.get("asOf") or timezone.now(),
            merchant_ids=[merchant.pk],
        )
        return Response(out.RecurringRevenueOutput(recurring).data)

"""Costs and margin under /v0: ``costs`` (CRUD, summary), ``profitability``; wire-compatible with the
Paygentic client (paygentic-sdk 0.6.3). Each view parses with an input serializer, calls a service or
selector and answers; another merchant's cost is not found (404), naming another merchant is 403."""

from __future__ import annotations

from decimal import Decimal

import orjson
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response

from catalog.api.fields import check_merchant, money_string
from catalog.api.views import PAGING, CatalogApi
from catalog.models import Customer
from core.api.fields import QueryIdField, parameter_combination_error, require_query, wire_field_names
from core.api.pagination import page_params
from core.api.serializers import ErrorOutput, list_output

from .. import margin, report, revenue, selectors, services
from . import serializers as s

ERRORS = {code: ErrorOutput for code in (400, 401, 403, 404)}
CONFLICT = {409: ErrorOutput}
COST_FIELDS = {"product": "productId", "unit_cost": "unitCost", "event_type": "eventType"}
COST_FIELDS |= {"value_property": "valueProperty", "group_by": "groupBy"}
TAGS = ["costs"]
PERIOD_RULE = (
    f"to must be after from, at most {selectors.MAX_RANGE_DAYS} days later"
    " (otherwise 400 with code parameter_combination)."
)


def _query(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.query_params.dict())
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _period_error(error: selectors.PeriodError):
    # Each bound is valid alone; the period they make is not (to before from, too long, too many windows).
    return parameter_combination_error(error.field, str(error))


class CostCollectionApi(CatalogApi):
    @extend_schema(
        operation_id="listCosts",
        tags=TAGS,
        parameters=[
            OpenApiParameter("merchantId", str),
            OpenApiParameter("productId", str),
            *PAGING,
        ],
        responses={200: list_output("CostList", s.CostOutput, with_object=True), **ERRORS},
    )
    def get(self, request):
        check_merchant(request, request.query_params.get("merchantId"))
        costs = selectors.cost_list(merchant=self.merchant, product_id=request.query_params.get("productId"))
        return self.page(costs, s.CostOutput, with_object=True)

    @extend_schema(
        operation_id="createCost",
        tags=TAGS,
        request=s.CostCreateInput,
        responses={201: s.CostOutput, **ERRORS, **CONFLICT},
    )
    def post(self, request):
        data = self.body(s.CostCreateInput)
        check_merchant(request, data.pop("merchant_id", None))
        data.pop("type")
        with wire_field_names(COST_FIELDS):
            cost = services.cost_create(merchant=self.merchant, **data)
        return Response(s.CostOutput(cost).data, status=status.HTTP_201_CREATED)


class CostDetailApi(CatalogApi):
    def get_object(self, id: str):
        return selectors.cost_get(merchant=self.merchant, cost_id=id)

    @extend_schema(operation_id="getCost", tags=TAGS, responses={200: s.CostOutput, **ERRORS})
    def get(self, request, id: str):
        return Response(s.CostOutput(self.get_object(id)).data)

    @extend_schema(
        operation_id="updateCost", tags=TAGS, request=s.CostUpdateInput, responses={200: s.CostOutput, **ERRORS}
    )
    def patch(self, request, id: str):
        cost = self.get_object(id)
        data = self.body(s.CostUpdateInput)
        with wire_field_names(COST_FIELDS):
            cost = services.cost_update(cost=cost, changes=data)
        return Response(s.CostOutput(cost).data)

    @extend_schema(
        operation_id="deleteCost", tags=TAGS, responses={204: OpenApiResponse(description="Deleted."), **ERRORS}
    )
    def delete(self, request, id: str):
        services.cost_delete(cost=self.get_object(id), now=timezone.now())
        return Response(status=status.HTTP_204_NO_CONTENT)


class CostSummaryApi(CatalogApi):
    @extend_schema(
        operation_id="getCostSummary",
        tags=TAGS,
        parameters=[
            OpenApiParameter("from", {"type": "string", "format": "date-time"}, required=True, description="Included."),
            OpenApiParameter(
                "to", {"type": "string", "format": "date-time"}, required=True, description=f"Excluded. {PERIOD_RULE}"
            ),
            OpenApiParameter("subject", str, description="A customer id: only its events (unknown: 404)."),
            OpenApiParameter(
                "groupBy",
                str,
                description="A dimension of the cost, or subject (another name: 400 parameter_combination).",
            ),
            OpenApiParameter(
                "window",
                str,
                enum=["MINUTE", "HOUR", "DAY"],
                description=f"At most {selectors.MAX_WINDOWS} windows in the period (400 parameter_combination).",
            ),
            OpenApiParameter(
                "filterGroupBy",
                {"type": "string", "maxLength": 2000},
                description='A JSON object of the cost\'s dimensions, e.g. {"gpu": "a100"}.',
            ),
        ],
        responses={200: s.CostUsageOutput, **ERRORS},
    )
    def get(self, request, id: str):
        cost = selectors.cost_get(merchant=self.merchant, cost_id=id)
        query = _query(s.CostSummaryQuery, request)
        customer = None
        if "subject" in query:
            customer = Customer.objects.filter(merchant=self.merchant, pk=query["subject"]).first()
            if customer is None:
                raise exceptions.NotFound(f"No customer {query['subject']} in your organization.")
        filter_group_by = None
        if "filterGroupBy" in query:
            try:
                filter_group_by = orjson.loads(query["filterGroupBy"])
            except orjson.JSONDecodeError:
                filter_group_by = None
            if not isinstance(filter_group_by, dict):
                raise exceptions.ValidationError({"filterGroupBy": ['A JSON object such as {"gpu": "a100"}.']})
        try:
            usage = selectors.cost_usage(
                cost=cost,
                start=query["from"],
                end=query["to"],
                customer=customer,
                group_by=query.get("groupBy"),
                window=query.get("window"),
                filter_group_by=filter_group_by,
            )
        except selectors.PeriodError as error:
            raise _period_error(error)
        except selectors.UnknownDimension as unknown:
            field = "groupBy" if unknown.dimension == query.get("groupBy") else "filterGroupBy"
            known = ", ".join(["subject", *sorted(cost.group_by or {})])
            # The dimension is a valid name; this cost does not define it.
            raise parameter_combination_error(
                field, f"Unknown dimension “{unknown.dimension}”; this cost has: {known}."
            )
        body = {
            "id": cost.pk,
            "name": cost.name,
            "type": cost.type,
            "currency": cost.currency,
            "eventType": cost.event_type,
            "totalQuantity": usage.total_quantity,
            "totalCost": usage.total_cost,
        }
        if cost.unit:
            body["unit"] = cost.unit
        if usage.groups is not None:
            body["groups"] = [
                {"dimensions": row.dimensions, "quantity": row.quantity, "cost": row.cost} for row in usage.groups
            ]
        if usage.time_series is not None:
            body["timeSeries"] = [
                {
                    "windowStart": row.window_start,
                    "windowEnd": row.window_end,
                    "quantity": row.quantity,
                    "cost": row.cost,
                }
                for row in usage.time_series
            ]
        return Response(s.CostUsageOutput(body).data)


def _cost_data(rows: list[margin.MarginRow]) -> str:
    """The client's ``costData`` of a row covering ``rows``' customers: ``recorded`` when a cost event was
    attributed to every one of them, ``partial`` to some (only the folded "Other" row covers several),
    ``none`` to none."""
    recorded = sum(1 for row in rows if row.cost_recorded)
    return "recorded" if recorded == len(rows) else ("partial" if recorded else "none")


def _profitability_row(row: margin.MarginRow, currency: str, cost_data: str | None = None) -> dict:
    cost_data = cost_data or _cost_data([row])
    # The client's rule: no margin without revenue, nor unless every customer's cost was recorded (a cost
    # nobody recorded would read as free, and a partly recorded one as cheaper than it is).
    pct = row.margin_pct if cost_data == "recorded" and row.revenue > 0 else None
    return {
        "customerId": row.key,
        "customerName": row.name,
        "netRevenue": money_string(row.revenue, currency),
        "totalCost": money_string(row.cost, currency),
        "profit": money_string(row.profit, currency),
        "marginPct": None if pct is None else format(pct, "f"),
        "costData": cost_data,
    }


class ProfitabilityApi(CatalogApi):
    @extend_schema(
        operation_id="getProfitability",
        tags=["profitability"],
        parameters=[
            OpenApiParameter("merchantId", str, required=True),
            OpenApiParameter("from", {"type": "string", "format": "date-time"}, required=True, description="Included."),
            OpenApiParameter(
                "to", {"type": "string", "format": "date-time"}, required=True, description=f"Excluded. {PERIOD_RULE}"
            ),
            OpenApiParameter("topN", {"type": "integer", "minimum": 1, "maximum": 100}),
            OpenApiParameter("currency", s.CURRENCY_QUERY_SCHEMA),
            OpenApiParameter("excludeEmpty", bool),
            OpenApiParameter("includeEmpty", bool),
        ],
        responses={200: s.ProfitabilityOutput, **ERRORS},
    )
    def get(self, request):
        check_merchant(request, require_query(request, "merchantId"))
        query = _query(s.ProfitabilityQuery, request)
        merchant = self.merchant
        currency = (query.get("currency") or merchant.default_currency).upper()
        try:
            result = margin.margins(currency=currency, start=query["from"], end=query["to"], merchant_ids=[merchant.pk])
        except selectors.PeriodError as error:
            raise _period_error(error)
        rows = result.by_customer
        shown = rows[: query["topN"]]
        rest = rows[query["topN"] :]
        body_rows = [_profitability_row(row, currency) for row in shown]
        if rest:
            other = margin.MarginRow(
                key="other",
                name="Other",
                revenue=sum((row.revenue for row in rest), margin.ZERO),
                cost=sum((row.cost for row in rest), margin.ZERO),
                cost_recorded=any(row.cost_recorded for row in rest),
            )
            body_rows.append(_profitability_row(other, currency, _cost_data(rest)))
        body = {
            "object": "profitability_summary",
            "currency": currency,
            "rows": body_rows,
            "customerCount": len(rows),
            "unloadedCustomerCount": None,  # every cost read settles (or the request fails): none unloaded
            "warnings": [] if result.cost_count else [f"No cost is defined in {currency}: costs count as zero."],
        }
        # Where the data lies when the period held none (absent otherwise: "not resolved" to the client).
        if not result.billed:
            body["revenueRange"] = _range(revenue.revenue_extent(merchant=merchant, currency=currency))
        if not any(row.cost_recorded for row in rows):
            # Only the cost events a customer can be found for: the only ones profitability counts.
            body["costRange"] = _range(selectors.cost_extent(costs=result.costs, attributed_only=True))
        with_figures = {row.key for row in rows}
        empty = Customer.objects.filter(merchant=merchant).exclude(pk__in=with_figures).order_by("name", "id")
        body["emptyCustomerCount"] = empty.count()
        if query["includeEmpty"] and not query["excludeEmpty"]:
            body["emptyCustomers"] = [
                _profitability_row(margin.MarginRow(c.pk, c.name, margin.ZERO, margin.ZERO, False), currency)
                for c in empty[: query["topN"]]
            ]
        return Response(s.ProfitabilityOutput(body).data)


class CostReportQuery(s.TypedSerializer):
    groupBy = s.serializers.CharField(max_length=100, trim_whitespace=False)  # matched as sent, as a dimension
    merchantId = QueryIdField()
    subject = QueryIdField()
    filterGroupBy = s.serializers.CharField(max_length=4096, required=False)
    topN = s.serializers.IntegerField(min_value=1, max_value=100, required=False, default=9)
    comparePriorPeriod = s.serializers.BooleanField(required=False, default=False)
    excludeEmpty = s.serializers.BooleanField(required=False, default=False)
    windowSize = s.serializers.ChoiceField(
        choices=[("HOUR", "HOUR"), ("DAY", "DAY"), ("MONTH", "MONTH")], required=False
    )
    sort = s.serializers.ChoiceField(
        choices=[("totalCost", "totalCost"), ("totalQuantity", "totalQuantity")], required=False, default="totalCost"
    )
    sortDir = s.serializers.ChoiceField(choices=[("asc", "asc"), ("desc", "desc")], required=False, default="desc")
    currency = s.CurrencyCode(required=False)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = s.UtcDateTime()
        fields["to"] = s.UtcDateTime()
        return fields


def _range(bounds: tuple | None) -> dict | None:
    return None if bounds is None else {"from": bounds[0], "to": bounds[1]}


def _report_group(group: report.ReportGroup, total: Decimal) -> dict:
    body = {
        "key": group.key,
        "label": group.label,
        "totalCost": group.cost,
        "totalQuantity": group.quantity,
        "percentOfTotal": (group.cost * 100 / total).quantize(Decimal("0.01")) if total else 0,
        "isOther": group.is_other,
        "unit": group.unit,
    }
    if group.prior_cost is not None:
        change = None
        if group.prior_cost:
            change = ((group.cost - group.prior_cost) * 100 / group.prior_cost).quantize(Decimal("0.01"))
        body["priorPeriod"] = {"cost": group.prior_cost, "changePercent": change}
    return body


def _dimension_filter(raw: str | None) -> dict | None:
    """``filterGroupBy``: a JSON object of dimension → value (or list of values)."""
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(i, str) for i in v)) for v in value.values()
    ):
        raise exceptions.ValidationError(
            {"filterGroupBy": ['A JSON object of dimension values, such as {"model": "gpt-4o"}.']}
        )
    return value


class CostReportApi(CatalogApi):
    @extend_schema(
        operation_id="getCostReport",
        tags=TAGS,
        parameters=[
            OpenApiParameter("from", {"type": "string", "format": "date-time"}, required=True, description="Included."),
            OpenApiParameter(
                "to",
                {"type": "string", "format": "date-time"},
                required=True,
                description=f"Excluded. {PERIOD_RULE} At most {selectors.MAX_WINDOWS} windows of windowSize.",
            ),
            OpenApiParameter(
                "groupBy",
                {"type": "string", "minLength": 1, "maxLength": 100},
                required=True,
                description="cost, product (our extension), customer, or a dimension of the one cost named by "
                "costId (e.g. model): one grouped query per cost. A dimension without exactly one costId, or "
                "one that cost does not define: 400 parameter_combination.",
            ),
            OpenApiParameter("merchantId", str),
            OpenApiParameter(
                "costId", {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 50}, explode=True
            ),
            OpenApiParameter("subject", str, description="A customer id: only its events (unknown: 404)."),
            OpenApiParameter(
                "filterGroupBy",
                {"type": "string", "maxLength": 4096},
                description='A JSON object of dimension values, e.g. {"model": "gpt-4o"} (at most 5): only the '
                "usage with those values; a cost that does not define a filtered dimension counts nothing.",
            ),
            OpenApiParameter("topN", {"type": "integer", "minimum": 1, "maximum": 100}),
            OpenApiParameter("comparePriorPeriod", bool),
            OpenApiParameter("excludeEmpty", bool),
            OpenApiParameter("windowSize", str, enum=["HOUR", "DAY", "MONTH"]),
            OpenApiParameter("sort", str, enum=["totalCost", "totalQuantity"]),
            OpenApiParameter("sortDir", str, enum=["asc", "desc"]),
            *PAGING,
            OpenApiParameter("currency", s.CURRENCY_QUERY_SCHEMA),
        ],
        responses={200: s.CostReportOutput, **ERRORS},
    )
    def get(self, request):
        query = _query(CostReportQuery, request)
        check_merchant(request, query.get("merchantId"))
        limit, offset = page_params(request, default_limit=25)
        merchant = self.merchant
        cost_ids = request.query_params.getlist("costId") or None
        if cost_ids is not None and len(cost_ids) > 50:
            raise exceptions.ValidationError({"costId": ["At most 50 cost ids."]})
        customer = None
        if "subject" in query:
            customer = Customer.objects.filter(merchant=merchant, pk=query["subject"]).first()
            if customer is None:
                raise exceptions.NotFound(f"No customer {query['subject']} in your organization.")
        currency = (query.get("currency") or merchant.default_currency).upper()
        try:
            result = report.cost_report(
                merchant=merchant,
                currency=currency,
                start=query["from"],
                end=query["to"],
                group_by=query["groupBy"],
                cost_ids=cost_ids,
                customer=customer,
                window=query.get("windowSize"),
                top_n=query["topN"],
                sort=query["sort"],
                descending=query["sortDir"] == "desc",
                compare_prior_period=query["comparePriorPeriod"],
                exclude_empty=query["excludeEmpty"],
                filter_group_by=_dimension_filter(query.get("filterGroupBy")),
            )
        except selectors.PeriodError as error:
            raise _period_error(error)
        except report.ReportError as error:
            raise parameter_combination_error(error.field, str(error))
        body = {
            "currency": currency,
            "period": {"from": query["from"], "to": query["to"]},
            "groupBy": query["groupBy"],
            "totalCost": result.total_cost,
            "totalQuantity": result.total_quantity,
            "groups": [_report_group(g, result.total_cost) for g in result.groups[offset : offset + limit]],
            "timeSeries": [{"windowStart": ws, "windowEnd": we, "groups": values} for ws, we, values in result.windows],
            "availableDimensions": result.available_dimensions,
            "pagination": {"total": len(result.groups), "limit": limit, "offset": offset},
            "groupCount": result.group_count,
            "emptyGroupCount": result.empty_group_count,
            "warnings": [],
        }
        if result.empty:  # absent otherwise: the client reads that as "not resolved", never as "none"
            body["costRange"] = _range(result.cost_range)
        return Response(s.CostReportOutput(body).data)

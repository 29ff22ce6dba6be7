"""Usage over REST: event ingestion (single and batch) and the meter/events reads of a billable metric.

Ingestion reads the raw body with orjson and validates in one plain-Python pass (see
``metering.services.events_ingest``): DRF serializers per event would cost as much as the database work.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal

import orjson
from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponse
from django.utils import timezone
from rest_framework import exceptions, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.auth import api_key_from_authorization, request_merchant
from catalog.models import Customer
from core.api.errors import (
    DATABASE_UNAVAILABLE,
    ApiError,
    api_error_body,
    database_unavailable_response,
    validation_error_body,
    validation_error_response,
)
from core.api.pagination import paginate
from core.formatting import iso_utc, json_number

from .. import selectors, services
from ..models import EVENT_ID_PREFIX, UsageEvent
from . import schema

logger = logging.getLogger(__name__)

MAX_EVENT_BODY_BYTES = 1024 * 1024  # one event; its data is further limited to 16 KiB
MAX_BATCH_BODY_BYTES = 10 * 1024 * 1024
DUPLICATE_HEADER = "Idempotent-Replayed"


def _json(body, status_code: int, headers: dict | None = None) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), status=status_code, content_type="application/json", headers=headers)


def _read_json(request, limit: int):
    """The request body parsed with orjson; 413 over ``limit`` bytes, 400 when it is not JSON."""
    declared = request.META.get("CONTENT_LENGTH")
    too_large = ApiError(
        f"The request body is larger than {limit // 1024} KiB."
        if limit < 1024 * 1024
        else f"The request body is larger than {limit // (1024 * 1024)} MiB.",
        status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        code="PAYLOAD_TOO_LARGE",
    )
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise too_large
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ApiError(f"The body is not valid JSON: {error}.", code="MALFORMED_JSON")


def event_body(event: UsageEvent | services.AcceptedEvent, *, namespace: str) -> dict:
    """The EventResponse shape; optional keys are left out when empty."""
    body = {
        "id": f"{EVENT_ID_PREFIX}{event.id}",
        "object": "event",
        "type": event.event_type,
        "source": event.source,
        "timestamp": iso_utc(event.timestamp),
        "idempotencyKey": event.idempotency_key,
        "namespace": namespace,
    }
    if event.customer_id:
        body["subject"] = event.customer_id
    if event.external_subject:
        body["externalSubject"] = event.external_subject
    if event.external_id:
        body["externalId"] = event.external_id
    return body


class _JsonOnly(BaseContentNegotiation):
    """Ingestion answers JSON whatever the Accept header (the only renderer configured): skip parsing it."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class _EventIngestBase(APIView):
    """Parsing and answers of the ingestion endpoints; ``ingest`` is where the events are stored.

    A ``POST`` with a valid bearer key is answered without DRF's request cycle (``dispatch`` below): the
    body is read and parsed here with orjson, the key looked up by the same function DRF's
    authentication calls, and every answer is the Paygentic body an ``ApiError`` or a validation error
    gets from ``core.api.errors`` (issue #24: DRF's Request wrapper, negotiation, permission and
    response finalisation cost as much CPU as the insert). Every other request (another method, a
    missing or refused key) goes through DRF's ``dispatch``, so its 401/405 answers are DRF's own. The
    class stays an ``APIView`` for drf-spectacular, which documents the ``post`` methods.

    Each endpoint's ``answer(request, merchant=)`` builds its answer (``post`` calls it too, after DRF's checks).

    Invoicing's real-time endpoints subclass these views and override only the hooks (metering never
    imports invoicing): ``ingest`` debits prepaid balances in the same transaction, ``raise_for_refusal``
    and ``items_extras`` report events refused for lack of credit.
    """

    # The key → merchant look-up is cached per process for a few seconds (see catalog/api/auth.py).
    api_key_cache = True
    content_negotiation_class = _JsonOnly

    def dispatch(self, request, *args, **kwargs):
        if request.method != "POST":
            return super().dispatch(request, *args, **kwargs)
        try:
            api_key = api_key_from_authorization(request.META.get("HTTP_AUTHORIZATION", ""), cached=True)
        except (exceptions.AuthenticationFailed, *DATABASE_UNAVAILABLE):
            api_key = None
        if api_key is None:  # DRF answers the 401, exactly as for every other endpoint
            return super().dispatch(request, *args, **kwargs)
        # What DRF's authentication would have left on the request: the key (simple-history records it
        # on changes, catalog/history.py) and no Django user.
        request.auth = api_key
        request.user = AnonymousUser()
        try:
            return self.answer(request, merchant=api_key.merchant)
        except ApiError as error:
            return _json(api_error_body(error), error.status_code)
        except DATABASE_UNAVAILABLE as error:
            logger.error("Database unavailable, answered 503: %s", error, exc_info=error)
            return database_unavailable_response()

    def ingest(self, *, merchant, raw_events: list, now):
        return services.events_ingest(merchant=merchant, raw_events=raw_events, now=now)

    def raise_for_refusal(self, outcome) -> None:
        """Refuse a single event for a reason found while ingesting it (none in metering)."""

    def items_extras(self, outcome) -> dict[int, dict]:
        """Extra keys of some batch items' answers, by index (none in metering): asked once per batch."""
        return {}


class EventIngestApi(_EventIngestBase):
    """``POST /v0/events``: one event; 202 with the event, also for a duplicate (then ``duplicate: true``)."""

    @schema.event_ingest_schema
    def post(self, request):  # documents the operation; a keyed POST is answered by ``answer``
        return self.answer(request, merchant=request_merchant(request))

    def answer(self, request, *, merchant) -> HttpResponse:
        body = _read_json(request, MAX_EVENT_BODY_BYTES)
        if not isinstance(body, dict):
            return _invalid(
                [{"field": "body", "message": "Send one event as a JSON object; use /v0/events/batch for several."}]
            )
        outcome = self.ingest(merchant=merchant, raw_events=[body], now=timezone.now())
        self.raise_for_refusal(outcome)
        result = outcome.results[0]
        if result.status == services.REJECTED:
            return _invalid(result.errors)
        if result.status == services.ACCEPTED:
            return _json(event_body(outcome.accepted[0], namespace=merchant.pk), status.HTTP_202_ACCEPTED)
        original = selectors.event_get_by_idempotency_key(merchant=merchant, idempotency_key=result.idempotency_key)
        return _json(
            {**event_body(original, namespace=merchant.pk), "duplicate": True},
            status.HTTP_202_ACCEPTED,
            headers={DUPLICATE_HEADER: "true"},
        )


class EventBatchIngestApi(_EventIngestBase):
    """``POST /v0/events/batch``: up to 5,000 events; 200 with a result per item and counts."""

    @schema.event_batch_schema
    def post(self, request):  # documents the operation; a keyed POST is answered by ``answer``
        return self.answer(request, merchant=request_merchant(request))

    def answer(self, request, *, merchant) -> HttpResponse:
        body = _read_json(request, MAX_BATCH_BODY_BYTES)
        events = body.get("events") if isinstance(body, dict) else body
        if not isinstance(events, list):
            return _invalid([{"field": "events", "message": 'Send {"events": [...]} (or a JSON list of events).'}])
        if len(events) > services.MAX_BATCH_EVENTS:
            return _invalid(
                [
                    {
                        "field": "events",
                        "message": f"{len(events)} events; at most {services.MAX_BATCH_EVENTS} per request.",
                    }
                ]
            )
        outcome = self.ingest(merchant=merchant, raw_events=events, now=timezone.now())
        extras = self.items_extras(outcome)
        results = []
        for result in outcome.results:
            item: dict = {"index": result.index, "status": result.status}
            if result.id is not None:
                item["id"] = f"{EVENT_ID_PREFIX}{result.id}"
            if result.idempotency_key is not None:
                item["idempotencyKey"] = result.idempotency_key
            if result.errors:
                item["errors"] = result.errors
            if extras and result.index in extras:
                item.update(extras[result.index])
            results.append(item)
        return _json({"object": "list", "results": results, "counts": outcome.counts}, status.HTTP_200_OK)


def _invalid(errors: list[dict]) -> HttpResponse:
    return _json(validation_error_body(errors), status.HTTP_400_BAD_REQUEST)


# --- reads --------------------------------------------------------------------------------------


def _query_datetime(params, name: str, errors: dict, *, required: bool) -> datetime | None:
    raw = params.get(name)
    if raw in (None, ""):
        if required:
            errors[name] = [f"{name} is required (an ISO-8601 date-time)."]
        return None
    try:
        # An unencoded "+" in a query string arrives as a space.
        parsed = datetime.fromisoformat(raw.replace(" ", "+"))
    except ValueError:
        errors[name] = [f"{name} must be an ISO-8601 date-time, e.g. 2025-01-01T00:00:00Z."]
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _query_int(params, name: str, errors: dict, *, minimum: int) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        errors[name] = [f"{name} must be a whole number."]
        return None
    if value < minimum:
        errors[name] = [f"{name} must be at least {minimum}."]
    return value


def _window(params, errors: dict) -> tuple[datetime | None, datetime | None]:
    start = _query_datetime(params, "from", errors, required=True)
    end = _query_datetime(params, "to", errors, required=True)
    if start and end and end <= start:
        errors["to"] = ["to must be after from."]
    return start, end


def _metric_or_404(request, metric_id: str):
    metric = selectors.metric_get(merchant=request_merchant(request), metric_id=metric_id)
    if metric is None:
        raise ApiError("No such billable metric.", status_code=status.HTTP_404_NOT_FOUND)
    return metric


def _subject(request, errors: dict) -> Customer | None:
    subject = request.query_params.get("subject")
    if not subject:
        return None
    customer = Customer.objects.filter(merchant=request_merchant(request), pk=subject).first()
    if customer is None:
        errors["subject"] = [f"No customer {subject} in your organization."]
    return customer


class MeterApi(APIView):
    """``GET /v0/billableMetrics/{id}/meter``: the UsageResponse (total, windows, groups)."""

    @schema.meter_schema
    def get(self, request, metric_id: str):
        metric = _metric_or_404(request, metric_id)
        params = request.query_params
        errors: dict[str, list[str]] = {}
        start, end = _window(params, errors)
        customer = _subject(request, errors)
        window_size = params.get("windowSize") or None
        if window_size and window_size not in selectors.WINDOW_SIZES:
            errors["windowSize"] = [f"windowSize must be one of {', '.join(selectors.WINDOW_SIZES)}."]
        group_by = [name.strip() for name in (params.get("groupBy") or "").split(",") if name.strip()]
        filter_group_by = None
        if params.get("filterGroupBy"):
            try:
                filter_group_by = orjson.loads(params["filterGroupBy"])
            except orjson.JSONDecodeError:
                filter_group_by = None
            if not isinstance(filter_group_by, dict):
                errors["filterGroupBy"] = ['filterGroupBy must be a JSON object such as {"model": "nle-1"}.']
        group_limit = _query_int(params, "groupLimit", errors, minimum=1)
        group_offset = _query_int(params, "groupOffset", errors, minimum=0)
        if group_offset is not None and group_limit is None:
            errors["groupOffset"] = ["groupOffset needs groupLimit."]
        if errors:
            return validation_error_response(_field_errors(errors))

        try:
            if not filter_group_by:
                total = selectors.usage_total(metric=metric, start=start, end=end, customer=customer)
            else:
                # The total honours the dimension filter too: computed from the filtered groups' query.
                filtered = selectors.usage_grouped(
                    metric=metric, start=start, end=end, customer=customer, group_by=[], filter_group_by=filter_group_by
                )
                total = filtered[0].value if filtered else Decimal(0)
            rows = []
            if window_size or group_by:
                rows = selectors.usage_grouped(
                    metric=metric,
                    start=start,
                    end=end,
                    customer=customer,
                    group_by=group_by,
                    window_size=window_size,
                    filter_group_by=filter_group_by,
                )
        except selectors.UnknownDimension as unknown:
            field = "groupBy" if unknown.dimension in group_by else "filterGroupBy"
            known = ", ".join(["subject", *sorted((metric.group_by or {}).keys())])
            return validation_error_response(
                [{"field": field, "message": f"Unknown dimension “{unknown.dimension}”; this metric has: {known}."}]
            )

        body: dict = {"billableMetricId": metric.pk, "totalValue": json_number(total), "object": "meter"}
        if group_by:
            group_totals: dict[tuple, Decimal] = {}
            for row in rows:
                key = tuple(sorted(row.group.items()))
                group_totals[key] = group_totals.get(key, Decimal(0)) + row.value
            if group_limit is not None:
                body["groupCount"] = len(group_totals)
                ranked = sorted(group_totals, key=lambda k: (-group_totals[k], k))
                chosen = set(ranked[(group_offset or 0) : (group_offset or 0) + group_limit])
                rows = [row for row in rows if tuple(sorted(row.group.items())) in chosen]
            body["groupedValues"] = [
                {"groupBy": row.group, "value": json_number(row.value), "eventCount": row.event_count} for row in rows
            ]
        if window_size:
            body["windowedValues"] = [
                {
                    "windowStart": iso_utc(row.window_start),
                    "windowEnd": iso_utc(row.window_end),
                    "value": json_number(row.value),
                }
                for row in rows
            ]
        return Response(body)


def _field_errors(errors: dict[str, list[str]]) -> list[dict[str, str]]:
    return [{"field": name, "message": message} for name, messages in errors.items() for message in messages]


def meter_event_body(event: UsageEvent) -> dict:
    body = {
        "id": f"{EVENT_ID_PREFIX}{event.pk}",
        "object": "meterEvent",
        "type": event.event_type,
        "source": event.source,
        "subject": event.customer_id or "",
        "time": iso_utc(event.timestamp),
        "idempotencyKey": event.idempotency_key,
        "data": event.data,
    }
    if event.external_id:
        body["externalId"] = event.external_id
    if event.external_subject:
        body["externalSubject"] = event.external_subject
    return body


class MetricEventsApi(APIView):
    """``GET /v0/billableMetrics/{id}/events``: the raw events counted by a metric, newest first."""

    @schema.metric_events_schema
    def get(self, request, metric_id: str):
        metric = _metric_or_404(request, metric_id)
        params = request.query_params
        errors: dict[str, list[str]] = {}
        start, end = _window(params, errors)
        customer = _subject(request, errors)
        if errors:
            return validation_error_response(_field_errors(errors))
        queryset = selectors.metric_events(
            metric=metric,
            start=start,
            end=end,
            customer=customer,
            external_id=params.get("externalId") or None,
            external_subject=params.get("externalSubject") or None,
        )
        events, pagination = paginate(queryset, request, default_limit=20)
        return Response(
            {
                "billableMetricId": metric.pk,
                "events": [meter_event_body(event) for event in events],
                "pagination": pagination,
                "object": "list",
            }
        )

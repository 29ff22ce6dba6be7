"""OpenAPI descriptions of the metering endpoints (the views build plain dicts on the hot path)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers

from core.api.schema import paging_parameters
from core.api.serializers import ErrorOutput

ERROR_RESPONSES = {code: ErrorOutput for code in (400, 401, 403, 404, 413)}

EVENT_FIELDS = {
    "type": serializers.CharField(help_text="Routes the event to the billable metrics with this eventType."),
    "source": serializers.CharField(help_text="URI of the emitting application."),
    "subject": serializers.CharField(required=False, help_text="Customer id (cus_…); wins over externalSubject."),
    "externalSubject": serializers.CharField(
        required=False, help_text="The customer's externalId; events before the customer exists are linked later."
    ),
    "data": serializers.DictField(help_text="Payload; metric values are read with each metric's valueProperty."),
    "timestamp": serializers.DateTimeField(
        required=False, help_text="Event time (default: now); at most 5 minutes in the future."
    ),
    "idempotencyKey": serializers.CharField(required=False, help_text="Unique per merchant; generated when absent."),
    "externalId": serializers.CharField(required=False),
    "namespace": serializers.CharField(required=False, help_text="The merchant id (defaults to the key's)."),
}
EventInput = inline_serializer("EventInput", fields=EVENT_FIELDS)
EventResponse = inline_serializer(
    "EventResponse",
    fields={
        "id": serializers.CharField(),
        "object": serializers.ChoiceField(choices=["event"]),
        "type": serializers.CharField(),
        "source": serializers.CharField(),
        "subject": serializers.CharField(required=False),
        "externalSubject": serializers.CharField(required=False),
        "timestamp": serializers.DateTimeField(),
        "idempotencyKey": serializers.CharField(),
        "externalId": serializers.CharField(required=False),
        "namespace": serializers.CharField(),
        "duplicate": serializers.BooleanField(
            required=False, help_text="Meterline extension: true when this key was already stored (not counted again)."
        ),
    },
)
# Items are checked one by one, each against EventInput: an invalid item (even one that is not an object)
# is ``rejected`` in its result while the good ones are kept, so the batch is still a 200. The events come
# as ``{"events": [...]}`` or as a bare JSON list.
_BATCH_EVENTS = {
    "type": "array",
    "maxItems": 5000,
    "items": {},
    "description": "At most 5,000 events, each like EventInput; an invalid one is rejected in its result.",
}
BatchInput = {
    "application/json": {
        "oneOf": [
            {"type": "object", "properties": {"events": _BATCH_EVENTS}, "required": ["events"]},
            _BATCH_EVENTS,
        ]
    }
}


def require_batch_body(result, generator, request, public):
    """drf-spectacular postprocessing hook: the batch body (a raw schema, which spectacular leaves optional)
    is required: without one the answer is a 400."""
    operation = result.get("paths", {}).get("/v0/events/batch", {}).get("post")
    if operation and "requestBody" in operation:
        operation["requestBody"]["required"] = True
    return result


ItemError = inline_serializer(
    "EventItemError", fields={"field": serializers.CharField(), "message": serializers.CharField()}
)
BatchResponse = inline_serializer(
    "EventBatchResponse",
    fields={
        "object": serializers.ChoiceField(choices=["list"]),
        "results": serializers.ListField(
            child=inline_serializer(
                "EventBatchItemResult",
                fields={
                    "index": serializers.IntegerField(),
                    "status": serializers.ChoiceField(choices=["accepted", "duplicate", "rejected"]),
                    "id": serializers.CharField(required=False),
                    "idempotencyKey": serializers.CharField(required=False),
                    "errors": serializers.ListField(child=ItemError, required=False),
                },
            )
        ),
        "counts": serializers.DictField(child=serializers.IntegerField()),
    },
)
UsageResponse = inline_serializer(
    "UsageResponse",
    fields={
        "billableMetricId": serializers.CharField(),
        "totalValue": serializers.DecimalField(
            max_digits=40, decimal_places=12, coerce_to_string=False, help_text="A JSON number (integers stay exact)."
        ),
        "object": serializers.ChoiceField(choices=["meter"]),
        "windowedValues": serializers.ListField(child=serializers.DictField(), required=False),
        "groupedValues": serializers.ListField(child=serializers.DictField(), required=False),
        "groupCount": serializers.IntegerField(required=False),
    },
)
MeterEventList = inline_serializer(
    "MeterEventList",
    fields={
        "billableMetricId": serializers.CharField(),
        "events": serializers.ListField(child=serializers.DictField()),
        "pagination": serializers.DictField(child=serializers.IntegerField()),
        "object": serializers.ChoiceField(choices=["list"]),
    },
)
_WINDOW = [
    OpenApiParameter("from", OpenApiTypes.DATETIME, required=True, description="Window start (inclusive)."),
    OpenApiParameter("to", OpenApiTypes.DATETIME, required=True, description="Window end (exclusive)."),
    OpenApiParameter("subject", OpenApiTypes.STR, description="Customer id."),
]

event_ingest_schema = extend_schema(
    operation_id="events_ingest",
    request=EventInput,
    responses={202: EventResponse, **ERROR_RESPONSES},
    description="Ingest one usage event (202; a resent idempotencyKey answers 202 with `duplicate: true`).",
)
event_batch_schema = extend_schema(
    operation_id="events_ingest_batch",
    request=BatchInput,
    responses={200: BatchResponse, **ERROR_RESPONSES},
    description="Meterline extension: up to 5,000 events; a result per item, good items kept when others fail.",
)
meter_schema = extend_schema(
    operation_id="billable_metrics_meter",
    parameters=[
        *_WINDOW,
        OpenApiParameter("windowSize", OpenApiTypes.STR, enum=["MINUTE", "HOUR", "DAY", "MONTH"]),
        OpenApiParameter("groupBy", OpenApiTypes.STR, description="Comma-separated dimensions."),
        OpenApiParameter("filterGroupBy", OpenApiTypes.STR, description='JSON object, e.g. {"model":"nle-1"}.'),
        OpenApiParameter("groupLimit", {"type": "integer", "minimum": 1}),
        OpenApiParameter("groupOffset", {"type": "integer", "minimum": 0}, description="Needs groupLimit."),
    ],
    responses={200: UsageResponse, **ERROR_RESPONSES},
)
metric_events_schema = extend_schema(
    operation_id="billable_metrics_list_events",
    parameters=[
        *_WINDOW,
        *paging_parameters(default_limit=20),
        OpenApiParameter("externalId", OpenApiTypes.STR),
        OpenApiParameter("externalSubject", OpenApiTypes.STR),
    ],
    responses={200: MeterEventList, **ERROR_RESPONSES},
)

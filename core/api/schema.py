"""drf-spectacular extensions and schema helpers of the API toolkit: constant ``object`` literals, strict
input bodies, paging parameters and the answers every operation can give (a postprocessing hook).
CoreConfig.ready() imports this module, which registers the extensions."""

from __future__ import annotations

import inspect

from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from rest_framework import serializers


class ConstantFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "core.api.serializers.Constant"

    def map_serializer_field(self, auto_schema, direction):
        # A pattern, not a one-value enum: spectacular would turn every ``object`` enum into colliding
        # components.
        value = self.target.value
        return {"type": "string", "pattern": f"^{value}$", "example": value, "description": f'Always "{value}".'}


class StrictSerializerSchema(OpenApiSerializerExtension):
    """Input serializers refuse unknown keys and blank required strings: say so in the schema
    (``additionalProperties: false``, ``minLength: 1``), so generated clients and fuzzers send what we accept."""

    target_class = "core.api.serializers.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        from .serializers import StrictSerializer

        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["additionalProperties"] = False
        if schema.get("description") == inspect.getdoc(StrictSerializer):
            del schema["description"]  # the base class's docstring, inherited: not about this body
        for name, field in self.target.fields.items():
            prop = schema.get("properties", {}).get(name)
            if prop is None or "$ref" in prop or field.read_only:
                continue
            if isinstance(field, serializers.CharField) and not field.allow_blank:
                prop.setdefault("minLength", 1)
        return schema


# Shared pieces of the views' extend_schema declarations, so the schema states each bound once.


def paging_parameters(*, default_limit: int = 10, max_limit: int | None = None, offset: bool = True) -> list:
    """``limit`` (1..max_limit) and ``offset`` (0..MAX_OFFSET), with the bounds ``page_params`` enforces."""
    from drf_spectacular.utils import OpenApiParameter

    from .pagination import MAX_OFFSET, MAX_PAGE_SIZE

    max_limit = max_limit or MAX_PAGE_SIZE
    parameters = [
        OpenApiParameter(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": max_limit},
            description=f"Page size (default {default_limit}).",
        )
    ]
    if offset:
        parameters.append(
            OpenApiParameter(
                "offset",
                {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
                description="Rows to skip (default 0).",
            )
        )
    return parameters


def error_responses(*codes: int) -> dict:
    """``{code: ErrorOutput}`` for an operation's error answers beyond the common ones (400, 401, 404 and 503
    are added to every operation by ``document_common_errors``)."""
    from .serializers import ErrorOutput

    return {code: ErrorOutput for code in codes}


NO_NULL_CHARACTERS = "^[^\\x00]*$"
# A path parameter is one URL segment: no "/" (and no null character).
PATH_SEGMENT = "^[^/\\x00]+$"

# Answers any API operation can give whatever its view: a refused query or body (400), a missing or
# unknown key (401), and a database that cannot be reached (503, with Retry-After).
COMMON_ERROR_CODES = {"400": "Invalid request.", "401": "Missing or unknown API key.", "503": "Database unavailable."}


# ``extend_schema(extensions={BODY_REQUIRED: True})``: the body is required although each of its members is
# optional (drf-spectacular marks a body required only when a member is), e.g. "at least one of add, edit,
# remove". The hook below turns it into ``requestBody.required`` and drops the marker.
BODY_REQUIRED = "x-meterline-body-required"


def document_common_errors(result, generator, request, public):
    """drf-spectacular postprocessing hook: every operation documents the answers every view can give.

    - 400, 401 and 503 on every operation, 404 on every operation with a path parameter (unknown id);
    - a body marked ``BODY_REQUIRED`` is documented as required;
    - every string path parameter is one path segment (no "/", no null character);
    - every free-text query parameter excludes the null character (a 400, core/api/fields.py);
    - every string query parameter (each value of a repeated one) has ``minLength: 1``: an empty value (``?startedBefore=``) is refused
      with a 400 (``core.api.middleware.EmptyQueryValueMiddleware``), never silently ignored.
    """
    error_ref = {"$ref": "#/components/schemas/ErrorOutput"}
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if operation.pop(BODY_REQUIRED, False) and "requestBody" in operation:
                operation["requestBody"]["required"] = True
            codes = dict(COMMON_ERROR_CODES)
            if "{" in path:
                codes["404"] = "No such object."
            for code, description in codes.items():
                operation["responses"].setdefault(
                    code, {"content": {"application/json": {"schema": error_ref}}, "description": description}
                )
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if parameter.get("in") == "path" and schema.get("type", "string") == "string":
                    # One path segment: the router answers a "/" in an id with 404 before any view runs.
                    schema.setdefault("pattern", PATH_SEGMENT)
                if parameter.get("in") == "query":
                    # A repeated parameter (``?subscriptionIds=a&subscriptionIds=b``): each value, as one.
                    values = schema.get("items", {}) if schema.get("type") == "array" else schema
                    if values.get("type") == "string":
                        values.setdefault("minLength", 1)
                        if "enum" not in values and "format" not in values:
                            values.setdefault("pattern", NO_NULL_CHARACTERS)
    return result

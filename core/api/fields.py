"""Serializer fields and request helpers of the API toolkit: the Decimal JSON parser, null characters, query parameters, and renaming model-field errors to the wire names the client sent."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, serializers
from rest_framework.exceptions import ErrorDetail
from rest_framework.parsers import JSONParser

from core.formatting import iso_utc

from .errors import snake_to_camel


def _refuse_constant(name: str):
    # NaN and Infinity are not JSON; Python's reader accepts them unless told otherwise.
    raise ValueError(f"{name} is not a JSON value")


class DecimalJSONParser(JSONParser):
    """JSON with every number read as a Decimal: ``0.1`` never passes through a binary float."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", "utf-8")
        try:
            text = stream.read().decode(encoding)
            return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant) if text.strip() else {}
        except ValueError as exc:
            raise exceptions.ParseError(f"The body is not valid JSON: {exc}") from None
        except RecursionError:
            raise exceptions.ParseError("The body is not valid JSON: it is nested too deeply.") from None


NUL = "\x00"
NUL_MESSAGE = "Null characters are not allowed."


class TextKeyDictField(serializers.DictField):
    """A JSON object whose keys are stored as text: a key with a null character is refused (PostgreSQL
    cannot store one), naming the field."""

    def to_internal_value(self, data):
        if isinstance(data, dict) and any(NUL in str(key) for key in data):
            raise serializers.ValidationError(
                "Null characters are not allowed in keys.", code="null_characters_not_allowed"
            )
        return super().to_internal_value(data)


def refuse_null_characters(request, path_values: dict) -> None:
    """A null character can be in no stored id or text: a path id with one is not found (404), a query
    parameter with one is a 400 naming it. PostgreSQL would refuse the query otherwise (a 500)."""
    if any(isinstance(value, str) and NUL in value for value in path_values.values()):
        raise exceptions.NotFound("No such object.")
    bad = sorted({name for name, values in request.query_params.lists() if any(NUL in v for v in [name, *values])})
    if bad:
        message = ErrorDetail(NUL_MESSAGE, code="null_characters_not_allowed")
        raise exceptions.ValidationError({name.replace(NUL, "\\x00"): [message] for name in bad})


# The error code of a refusal for a rule between query parameters ("give exactly one of customerId and
# externalCustomerId"): OpenAPI 3.0 cannot state such rules (only each parameter's own schema), so each
# is in the parameters' descriptions and its refusal names itself by this code.
PARAMETER_COMBINATION = "parameter_combination"


def parameter_combination_error(field: str, message: str) -> exceptions.ValidationError:
    """A 400 for query parameters that are each valid but not together (code ``parameter_combination``)."""
    return exceptions.ValidationError({field: [ErrorDetail(message, code=PARAMETER_COMBINATION)]})


def require_query(request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise exceptions.ValidationError({name: ["This query parameter is required."]})
    return value


@contextlib.contextmanager
def wire_field_names(mapping: dict[str, str] | None = None):
    """Re-raise model validation errors under the wire names (``unit_price`` → ``properties.unitPrice``)."""
    mapping = mapping or {}
    try:
        yield
    except DjangoValidationError as exc:
        if not hasattr(exc, "error_dict"):
            raise
        detail: dict[str, list[str]] = {}
        for field, messages in exc.message_dict.items():
            name = mapping.get(field) or (field if field == "__all__" else snake_to_camel(field))
            detail.setdefault(name, []).extend(messages)
        raise exceptions.ValidationError(detail) from None


class UtcDateTimeField(serializers.DateTimeField):
    """A moment on the wire as ``core.formatting.iso_utc`` writes it (UTC with a Z, whatever TIME_ZONE
    says); documented as a date-time."""

    def to_representation(self, value):
        return iso_utc(value)


class QueryIdField(serializers.CharField):
    """An id given as a query filter (``?customerId=…``): matched exactly as sent. DRF's default trimming
    would turn ``?customerId=+`` (a space) into a blank and refuse it, although the schema admits any
    non-empty string; untrimmed, an id no object has simply matches nothing."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

"""Serializer fields and helpers shared by the catalog API: decimal strings, merchant-scoped ids,
the merchant check, and renaming model-field errors to the wire names the client sent."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, serializers
from rest_framework.exceptions import ErrorDetail
from rest_framework.parsers import JSONParser

from ..pricing import round_money
from ..pricing.limits import BOUND_TEXT, within_bound
from .auth import request_merchant
from .errors import ApiError, snake_to_camel


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


def decimal_string(value: Decimal | None) -> str | None:
    """A Decimal as a plain string without trailing zeros or exponent: 0.000002000000 → "0.000002"."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in {"-0", "0"} else text


def money_string(value: Decimal | None, currency: str) -> str | None:
    """An amount already rounded to ``currency``'s minor unit, printed with it: 2.4 USD → "2.40"."""
    if value is None:
        return None
    rounded = round_money(value, currency)
    return format(rounded.copy_abs() if not rounded else rounded, "f")  # never "-0.00"


@extend_schema_field({"type": "string", "format": "decimal", "example": "0.000002"})
class DecimalString(serializers.Field):
    """Money and rates on the wire: a decimal string (a JSON number is accepted on input).

    Every value is bounded by ``catalog.pricing.limits`` (15 digits before the point, 12 after it):
    beyond it is a 400 naming the field, never an overflow further down.
    """

    default_error_messages = {
        "invalid": 'Enter a decimal number as a string, e.g. "0.000002".',
        "out_of_bounds": f"Enter a number with {BOUND_TEXT}.",
    }

    def __init__(self, *, min_value: Decimal | None = None, **kwargs):
        self.min_value = min_value
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (str, int, Decimal)):
            self.fail("invalid")
        try:
            value = Decimal(str(data).strip())
        except InvalidOperation:
            self.fail("invalid")
        if not value.is_finite():
            self.fail("invalid")
        if not within_bound(value):
            self.fail("out_of_bounds")
        if self.min_value is not None and value < self.min_value:
            raise serializers.ValidationError(f"Must be at least {decimal_string(self.min_value)}.")
        return value

    def to_representation(self, value):
        return decimal_string(value)


@extend_schema_field(OpenApiTypes.NUMBER)
class DecimalNumber(DecimalString):
    """A percent or rate the client types as a JSON number (taxes); read without float maths."""

    default_error_messages = {"invalid": "Enter a number."}

    def to_representation(self, value):
        # The renderer writes a Decimal as a JSON number.
        return None if value is None else value.normalize()


class MerchantScopedId(serializers.PrimaryKeyRelatedField):
    """An id in the body naming one of the caller's objects; anything else is a 400 naming the field."""

    default_error_messages = {
        "does_not_exist": "No such object: “{pk_value}”.",
        "incorrect_type": "Give the id as a string.",
        "null_characters_not_allowed": NUL_MESSAGE,
    }

    def __init__(self, model, **kwargs):
        self.model = model
        kwargs.setdefault("queryset", model.objects.all())
        super().__init__(**kwargs)

    def get_queryset(self):
        return self.model.objects.filter(merchant=request_merchant(self.context["request"]))

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("incorrect_type", data_type=type(data).__name__)
        if NUL in data:  # PostgreSQL would refuse the query
            self.fail("null_characters_not_allowed")
        return super().to_internal_value(data)


def check_merchant(request, merchant_id: str | None, field: str = "merchantId") -> None:
    """Refuse (403) a request that names a merchant other than the API key's."""
    if merchant_id is not None and merchant_id != request_merchant(request).id:
        raise ApiError(
            f"This API key cannot act for the merchant named in {field}.",
            status_code=403,
            code="FORBIDDEN_MERCHANT",
            details={"field": field},
        )


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

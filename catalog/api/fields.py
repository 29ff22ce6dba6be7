"""Serializer fields of the catalog API bound to the catalog: money and rate strings within the rating
engine's bounds, merchant-scoped ids and the merchant check. The generic fields and helpers are in
core/api/fields.py."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api.errors import ApiError
from core.api.fields import NUL, NUL_MESSAGE
from core.formatting import decimal_string

from ..pricing import round_money
from ..pricing.limits import BOUND_TEXT, within_bound
from ..validators import THRESHOLD_AMOUNT_MAX, THRESHOLD_AMOUNT_MIN, THRESHOLD_LADDER_MAX, email_list_split
from .auth import request_merchant

_SEPARATOR = re.compile(r"[\s,;]")


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

    def __init__(self, *, min_value: Decimal | None = None, max_value: Decimal | None = None, **kwargs):
        self.min_value = min_value
        self.max_value = max_value
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
        if self.max_value is not None and value > self.max_value:
            raise serializers.ValidationError(f"Must be at most {decimal_string(self.max_value)}.")
        return value

    def to_representation(self, value):
        return decimal_string(value)


class MoneyString(DecimalString):
    """An amount printed to its currency's minor unit (``money_string``: 2.4 USD → "2.40"); the currency is
    the ``currency`` of the same object. Output only."""

    def get_attribute(self, instance):
        return money_string(super().get_attribute(instance), instance.currency)

    def to_representation(self, value):
        return value


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


MAX_BILLING_EMAILS = 10
BILLING_EMAILS_MAX_CHARS = 1000  # Customer.billing_emails, stored comma-separated


@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "string", "format": "email", "maxLength": 254},
        "maxItems": MAX_BILLING_EMAILS,
        "nullable": True,
        "description": "Meterline extension: where invoices, credit notes and reminders are e-mailed (accounts "
        "payable, a shared inbox…), at most 10, repeats dropped; [] or null clears (documents then go to the "
        "consumer's e-mail). Read back as `billingEmails` and, with the fallback, as `organization.billingEmails`.",
    }
)
class BillingEmailsField(serializers.Field):
    """A customer's billing e-mails on the wire: a JSON list of addresses, each validated (a 400 names the
    item, ``billingEmails[1]``), at most ``MAX_BILLING_EMAILS``, repeats dropped. Its internal value is the
    model's comma-separated text (``Customer.billing_emails``); null or [] clears it. Input only: responses
    render the stored list with ``billing_emails_out``."""

    default_error_messages = {
        "not_a_list": "Send a list of e-mail addresses.",
        "too_many": f"At most {MAX_BILLING_EMAILS} billing e-mail addresses.",
        "too_long": f"The addresses take more than {BILLING_EMAILS_MAX_CHARS} characters together.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def validate_empty_values(self, data):
        if data is None:
            return True, ""  # null clears, as [] does
        return super().validate_empty_values(data)

    def to_internal_value(self, data):
        if not isinstance(data, list):
            self.fail("not_a_list")
        if len(data) > MAX_BILLING_EMAILS:
            self.fail("too_many")
        errors: list[list[str]] = []
        for item in data:
            if not isinstance(item, str):
                errors.append(["Not a string."])
                continue
            try:
                validate_email(item)
            except DjangoValidationError:
                errors.append([f"Not an e-mail address: “{item[:254]}”."])
                continue
            # Stored comma-separated: a (quoted) address holding a separator would split in two.
            errors.append(["An address cannot hold a comma, semicolon or space."] if _SEPARATOR.search(item) else [])
        if any(errors):
            raise serializers.ValidationError(errors)
        text = ", ".join(dict.fromkeys(data))
        if len(text) > BILLING_EMAILS_MAX_CHARS:
            self.fail("too_long")
        return text

    def to_representation(self, value):
        return email_list_split(value)


def billing_emails_out(customer) -> list[str]:
    """The billing e-mails set on ``customer``, in order ([] when none: documents go to its e-mail)."""
    return email_list_split(customer.billing_emails)


class ThresholdLadderField(serializers.ListField):
    """Further usage thresholds after the first (invoicing/THRESHOLDS.md): at most 20 decimal strings, each from
    0.01 to 1000000000, increasing; stored and answered as decimal strings."""

    def __init__(self, **kwargs):
        super().__init__(
            child=DecimalString(min_value=THRESHOLD_AMOUNT_MIN, max_value=THRESHOLD_AMOUNT_MAX),
            max_length=THRESHOLD_LADDER_MAX,
            **kwargs,
        )

    def to_internal_value(self, data):
        amounts = [Decimal(value) for value in super().to_internal_value(data)]
        if any(later <= earlier for earlier, later in zip(amounts, amounts[1:], strict=False)):
            raise serializers.ValidationError("The thresholds must increase.")
        return [decimal_string(amount) for amount in amounts]

    def to_representation(self, data):
        return None if data is None else [str(value) for value in data]

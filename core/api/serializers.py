"""Serializer base classes and shapes shared by every app's API: typed and strict inputs, constant
literals, the error body and paging."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail


class TypedSerializer(serializers.Serializer):
    """Text fields take JSON strings only, as the schema says (``type: string``): DRF would turn
    ``{"description": 0}`` into ``"0"``; here it is a 400 naming the field."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            wrong = sorted(
                name
                for name, field in self.fields.items()
                if isinstance(field, serializers.CharField)
                and not field.read_only
                and data.get(name) is not None
                and not isinstance(data[name], str)
            )
            if wrong:
                raise serializers.ValidationError(
                    {name: [ErrorDetail("Not a string.", code="invalid")] for name in wrong}
                )
        return super().to_internal_value(data)


class StrictSerializer(TypedSerializer):
    """Refuses keys it does not know, so a typo is a 400 rather than a silently ignored field."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        return super().to_internal_value(data)


class Constant(serializers.Field):
    """A literal on every response (``object: "plan"``)."""

    def __init__(self, value: str, **kwargs):
        self.value = value
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, _instance):
        return self.value


@extend_schema_field({"type": "string", "nullable": True})
class BlankAsNull(serializers.CharField):
    """Model text fields store "" for "none"; the wire says null."""

    def to_representation(self, value):
        return value or None


class ErrorItemOutput(serializers.Serializer):
    field = serializers.CharField()
    message = serializers.CharField()
    code = serializers.CharField(required=False)


class ErrorOutput(serializers.Serializer):
    message = serializers.CharField()
    error = serializers.CharField()
    code = serializers.CharField(required=False)
    errors = ErrorItemOutput(many=True, required=False)
    details = serializers.DictField(required=False)


class PaginationOutput(serializers.Serializer):
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()
    total = serializers.IntegerField()


def list_output(name: str, item, *, with_object: bool):
    fields = {"data": item(many=True), "pagination": PaginationOutput()}
    if with_object:
        fields = {"object": Constant("list"), **fields}
    return inline_serializer(name=name, fields=fields)

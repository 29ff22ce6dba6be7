"""drf-spectacular extensions: the Bearer API key scheme, constant ``object`` literals and strict input bodies."""

from __future__ import annotations

import inspect

from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerExtension,
    OpenApiSerializerFieldExtension,
)
from rest_framework import serializers


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "catalog.api.auth.ApiKeyAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A merchant API key: Authorization: Bearer <key>."}


class ConstantFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "catalog.api.serializers.Constant"

    def map_serializer_field(self, auto_schema, direction):
        # A pattern, not a one-value enum: spectacular would turn every ``object`` enum into colliding
        # components.
        value = self.target.value
        return {"type": "string", "pattern": f"^{value}$", "example": value, "description": f'Always "{value}".'}


class StrictSerializerSchema(OpenApiSerializerExtension):
    """Input serializers refuse unknown keys and blank required strings: say so in the schema
    (``additionalProperties: false``, ``minLength: 1``), so generated clients and fuzzers send what we accept."""

    target_class = "catalog.api.serializers.StrictSerializer"
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

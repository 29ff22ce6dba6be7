"""drf-spectacular extensions: the Bearer API key scheme and constant ``object`` literals."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerFieldExtension


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

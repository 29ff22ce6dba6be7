"""drf-spectacular extension for the catalog's Bearer API key scheme, and the currency query parameter. The
generic extensions and schema helpers are in core/api/schema.py."""

from __future__ import annotations

from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
)


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "catalog.api.auth.ApiKeyAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A merchant API key: Authorization: Bearer <key>."}


def currency_parameter(name: str = "currency", **kwargs):
    """A query parameter holding an ISO 4217 code of the shipped table (anything else is a 400)."""
    from drf_spectacular.utils import OpenApiParameter

    from catalog.pricing.currency import MINOR_UNITS

    return OpenApiParameter(name, {"type": "string", "enum": sorted(MINOR_UNITS)}, **kwargs)

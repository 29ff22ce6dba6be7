"""OpenAPI postprocessing for the costs endpoints."""

from __future__ import annotations

from ..report import MAX_FILTER_DIMENSIONS

DIMENSION_FILTER = {
    "type": "object",
    "maxProperties": MAX_FILTER_DIMENSIONS,
    "additionalProperties": {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}, "minItems": 1},
        ]
    },
}
FILTERED_READS = ("/v0/costs/report", "/v0/costs/{id}/summary")


def document_dimension_filters(result, generator, request, public):
    """drf-spectacular postprocessing hook: ``filterGroupBy`` is a JSON-encoded object of dimension values
    (OpenAPI's ``content`` for a parameter), not any string; spectacular's parameters carry only a schema."""
    for path in FILTERED_READS:
        operation = result.get("paths", {}).get(path, {}).get("get", {})
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "filterGroupBy":
                parameter.pop("schema", None)
                parameter["content"] = {"application/json": {"schema": DIMENSION_FILTER}}
    return result

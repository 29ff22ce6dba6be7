"""The OpenAPI schema describes every catalog operation, and the docs page is served without a CDN."""

from __future__ import annotations

from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator

CATALOG_OPERATIONS = {
    "createProduct", "listProducts", "getProduct", "updateProduct", "deleteProduct",
    "createBillableMetric", "listBillableMetrics", "getBillableMetric", "updateBillableMetric", "deleteBillableMetric",
    "createFee", "listFees", "getFee", "updateFee", "deleteFee",
    "createPrice", "listPrices", "getPrice", "updatePrice", "deletePrice",
    "createPlan", "listPlans", "listAvailablePlans", "getPlan", "updatePlan",
    "createCustomer", "listCustomers", "getCustomer", "updateCustomer", "deleteCustomer",
}  # fmt: skip


def test_schema_names_every_operation_without_warnings(db):
    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        schema = SchemaGenerator().get_schema(request=None, public=True)

    # Only warnings about other apps' views may remain.
    catalog_problems = [m for m in [*GENERATOR_STATS._warn_cache, *GENERATOR_STATS._error_cache] if "catalog" in m]
    assert catalog_problems == []

    operation_ids = {
        op["operationId"] for path in schema["paths"].values() for op in path.values() if "operationId" in op
    }
    assert CATALOG_OPERATIONS <= operation_ids
    create_price = schema["paths"]["/v0/prices"]["post"]
    assert set(create_price["responses"]) == {"201", "400", "401", "403", "404", "503"}
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A merchant API key: Authorization: Bearer <key>.",
    }


def test_docs_page_uses_the_local_swagger_ui(client):
    response = client.get("/v0/docs")

    html = response.content.decode()
    assert response.status_code == 200
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn.jsdelivr" not in html

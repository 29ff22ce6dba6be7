"""/v0/features: create, list (productId required), get, PATCH, DELETE; responses parsed by the client's models."""

from __future__ import annotations

import pytest
from paygentic_sdk import models as pg

pytestmark = pytest.mark.django_db


def _create(api_client, merchant, product, **overrides):
    body = {"key": "api-calls", "name": "API calls", "merchantId": merchant.pk, "productId": product.pk, **overrides}
    return api_client.post("/v0/features", body, format="json")


def test_create_answers_201_with_a_feature(api_client, merchant, product):
    response = _create(api_client, merchant, product, type="metered", metadata={"tier": "pro"})

    assert response.status_code == 201
    feature = pg.Feature.model_validate(response.json())
    assert (feature.key, feature.type, feature.product_id, feature.metadata) == (
        "api-calls",
        "metered",
        product.pk,
        {"tier": "pro"},
    )
    assert response.json()["object"] == "feature"


def test_type_defaults_to_boolean(api_client, merchant, product):
    assert _create(api_client, merchant, product).json()["type"] == "boolean"


@pytest.mark.parametrize("key", ["API", "a_b", "-x", "a--b", ""])
def test_a_key_that_is_not_a_slug_is_a_400(api_client, merchant, product, key):
    response = _create(api_client, merchant, product, key=key)

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["key"]


def test_a_duplicate_key_in_the_product_is_a_400_naming_key(api_client, merchant, product):
    _create(api_client, merchant, product)

    response = _create(api_client, merchant, product)

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["key"]


def test_a_metric_on_a_boolean_feature_is_a_400(api_client, merchant, product, metric):
    response = _create(api_client, merchant, product, billableMetricId=metric.pk)

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["billableMetricId"]


def test_list_needs_product_id_and_wraps_as_the_client_expects(api_client, merchant, product):
    _create(api_client, merchant, product, key="a")
    _create(api_client, merchant, product, key="b")

    assert api_client.get("/v0/features").status_code == 400
    response = api_client.get(f"/v0/features?productId={product.pk}&limit=1")
    page = pg.ListFeaturesResponse.model_validate(response.json())
    assert (page.object, [f.key for f in page.data], page.pagination.total) == ("list", ["a"], 2)
    by_key = api_client.get(f"/v0/features?productId={product.pk}&key=b").json()
    assert [f["key"] for f in by_key["data"]] == ["b"]


def test_get_patch_and_delete(api_client, merchant, product):
    feature_id = _create(api_client, merchant, product).json()["id"]

    assert pg.Feature.model_validate(api_client.get(f"/v0/features/{feature_id}").json()).id == feature_id
    patched = api_client.patch(f"/v0/features/{feature_id}", {"name": "Calls", "type": "static"}, format="json")
    assert patched.status_code == 200
    assert (patched.json()["name"], patched.json()["type"]) == ("Calls", "static")
    assert api_client.delete(f"/v0/features/{feature_id}").status_code == 204
    assert api_client.get(f"/v0/features/{feature_id}").status_code == 404


def test_a_feature_with_entitlements_cannot_be_deleted(api_client, boolean_feature, customer):
    api_client.post(
        "/v1/entitlements",
        {"customerId": customer.pk, "featureId": boolean_feature.pk, "template": {"type": "boolean"}},
        format="json",
    )

    response = api_client.delete(f"/v0/features/{boolean_feature.pk}")

    assert response.status_code == 409
    assert response.json()["code"] == "RESOURCE_IN_USE"


def test_another_merchants_feature_is_404(rival_client, api_client, merchant, product):
    feature_id = _create(api_client, merchant, product).json()["id"]

    assert rival_client.get(f"/v0/features/{feature_id}").status_code == 404
    assert rival_client.patch(f"/v0/features/{feature_id}", {"name": "x"}, format="json").status_code == 404
    assert rival_client.delete(f"/v0/features/{feature_id}").status_code == 404
    assert rival_client.get(f"/v0/features?productId={product.pk}").json()["data"] == []
    foreign = _create(rival_client, merchant, product, key="z")
    assert foreign.status_code == 400  # another merchant's productId is unknown, as for any body id
    assert {e["field"] for e in foreign.json()["errors"]} == {"productId"}

"""Fuzz every operation of the OpenAPI schema (``/v0/schema``) with schemathesis: malformed bodies, wrong
types, unknown enum values, unknown ids, oversize pages, missing or wrong auth. Nothing may answer 5xx,
every 4xx must be in the client's error shape, and every JSON answer must match what the schema documents.

The operations come from the schema itself, so endpoints added later (events, subscriptions, invoices, test
clocks) are fuzzed without touching this file. Runs are derandomized (the same cases every run) and bounded
(``max_examples`` per operation, plus schemathesis's deterministic coverage cases). To replay a failure, run
the printed curl command against ``make run`` after seeding the same ids (``tests/api/fuzzing.py``).
"""

from __future__ import annotations

import json
import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from billing_site.wsgi import application
from tests.api.fuzzing import (
    FuzzTally,
    add_hostile_values,
    error_body_shape,
    point_at_seeds,
    positive_data_acceptance_outside_bodies,
    seed_catalog,
)

# CI: a few generated cases per operation and mode (plus the deterministic coverage cases). A longer run:
# ``FUZZ_EXAMPLES=100 FUZZ_TALLY=var/fuzz.json pytest tests/api/test_schema_fuzz.py -k operation`` (the
# tally records every failure instead of stopping at the first, and counts the requests).
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))
TALLY = FuzzTally(os.environ.get("FUZZ_TALLY") or None)

schema = schemathesis.openapi.from_wsgi("/v0/schema?format=json", application)
schema.config.generation.update(
    max_examples=MAX_EXAMPLES,
    deterministic=True,
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
)
schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])


@pytest.fixture
def seeds(db):
    # The WSGI app runs in this thread on the test's connection, inside the test transaction: keep
    # Django from closing that connection at the end of each request (its test client does the same).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    request_started.connect(TALLY.count_request)
    try:
        yield seed_catalog()
    finally:
        request_started.disconnect(TALLY.count_request)
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    # Function-scoped fixtures are intended (one seeded catalog per operation); slow or heavily filtered
    # generation is not a defect of the API.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_operation_never_fails_and_answers_as_documented(case, seeds):
    # Valid cases are pointed at seeded objects (so they reach validation, conflicts and success, not only
    # "404 unknown id") and stay valid; invalid cases also get the hostile values that once crashed an
    # endpoint, and must still be refused with a 4xx.
    if case.meta is None or case.meta.generation.mode.is_positive:
        point_at_seeds(case, seeds)
    else:
        add_hostile_values(case)

    # Every check schemathesis has (status codes, content types, headers and bodies as documented, valid
    # data accepted, invalid data refused, auth enforced, unsupported methods, ...), plus the error shape.
    # The key, unless the case is about a missing or wrong Authorization header (it must then be refused).
    auth_negated = case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER)
    try:
        case.call_and_validate(
            headers=None if auth_negated else {"Authorization": f"Bearer {seeds.raw_key}"},
            additional_checks=[error_body_shape, positive_data_acceptance_outside_bodies],
            excluded_checks=[positive_data_acceptance],
        )
    except (Failure, FailureGroup) as exc:
        if not TALLY.record(case, exc):
            raise


# The schema itself


def test_the_schema_is_valid_openapi_3(client):
    response = client.get("/v0/schema?format=json")
    document = json.loads(response.content)

    loaded = schemathesis.openapi.from_dict(document)
    loaded.validate()  # raises on any violation of the OpenAPI 3 meta-schema
    assert document["openapi"].startswith("3.")


def test_the_schema_documents_the_price_properties_union(client):
    components = json.loads(client.get("/v0/schema?format=json").content)["components"]["schemas"]

    assert components["PriceProperties"] == {
        "oneOf": [
            {"$ref": "#/components/schemas/StandardProperties"},
            {"$ref": "#/components/schemas/TieredProperties"},
            {"$ref": "#/components/schemas/PercentageProperties"},
            {"$ref": "#/components/schemas/DynamicProperties"},
        ]
    }
    assert set(components["StandardProperties"]["properties"]) == {"unitPrice", "packageSize", "packageRounding"}
    assert components["TieredProperties"]["required"] == ["tiers"]
    assert set(components["PriceTier"]["properties"]) == {"upTo", "unitPrice", "flatFee"}
    assert components["PriceTier"]["properties"]["upTo"]["nullable"] is True
    assert components["PercentageProperties"]["required"] == ["percentage"]
    assert set(components["DynamicProperties"]["properties"]) == {
        "minPrice",
        "maxPrice",
        "mode",
        "eventPriceProperty",
        "rates",
    }
    for name in ("PriceCreateInput", "PatchedPriceUpdateInput", "PriceOutput"):
        properties = components[name]["properties"]
        assert properties["properties"]["allOf"] == [{"$ref": "#/components/schemas/PriceProperties"}]
        # free allowance and minimum commitment, described as in the admin
        assert properties["freeUnits"]["description"].startswith("The first units of each period cost nothing")
        assert properties["minimumCommitment"]["description"].startswith("Minimum charged for this line")
    assert components["PlanOutput"]["properties"]["minimumCommitment"]["description"].startswith(
        "Guaranteed minimum per billing period"
    )


def test_the_schema_says_what_input_bodies_refuse(client):
    document = json.loads(client.get("/v0/schema?format=json").content)
    components = document["components"]["schemas"]

    product = components["ProductCreateInput"]
    assert product["additionalProperties"] is False
    assert product["properties"]["name"] == {"type": "string", "maxLength": 200, "minLength": 1}
    assert product["properties"]["description"] == {"type": "string"}  # blank allowed
    assert "description" not in product  # not the inherited StrictSerializer docstring
    # ids absent from a price (not null) are optional in the schema
    assert not {"billableMetricId", "feeId", "pricingUnitId"} & set(components["PriceOutput"]["required"])
    limit, offset = (
        {p["name"]: p["schema"] for p in document["paths"]["/v0/products"]["get"]["parameters"]}[name]
        for name in ("limit", "offset")
    )
    assert limit == {"type": "integer", "minimum": 1, "maximum": 100}
    assert offset == {"type": "integer", "minimum": 0, "maximum": 2147483647}

"""Helpers for the schema fuzz test: a seeded catalog with fixed ids, a case mapper that points generated
ids at those objects, and a check on the shape of every 4xx body.

The ids are fixed so a failing case printed by schemathesis can be replayed by hand against the same data.
"""

from __future__ import annotations

import atexit
import json
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from schemathesis.core import NOT_SET
from schemathesis.specs.openapi.checks import positive_data_acceptance

from catalog import models
from catalog.services import api_key_create
from core.api.fields import PARAMETER_COMBINATION
from tests.factories import (
    BillableMetricFactory,
    CustomerFactory,
    FeeFactory,
    FeePriceFactory,
    MerchantFactory,
    MeteredPriceFactory,
    PlanFactory,
    PriceTierFactory,
    ProductFactory,
    SubscriptionFactory,
)
from wallets.models import Commitment

MERCHANT_ID = "org_fuzzMerchant0001"
RIVAL_MERCHANT_ID = "org_fuzzRival0000001"


@dataclass
class Seeds:
    """The seeded objects' ids: by path collection (``/v0/<collection>/{id}``) and by id field name."""

    raw_key: str
    by_collection: dict[str, list[str]] = field(default_factory=dict)
    by_field: dict[str, str] = field(default_factory=dict)

    @property
    def all_ids(self) -> list[str]:
        return sorted({object_id for ids in self.by_collection.values() for object_id in ids})


def seed_catalog() -> Seeds:
    """One merchant's catalog touching every price model, a customer on a live subscription, and one
    object of another merchant (its id must answer 404, never leak or crash)."""
    merchant = MerchantFactory(id=MERCHANT_ID, name="Fuzz Labs")
    _, raw_key = api_key_create(merchant=merchant, name="fuzz key")

    product = ProductFactory(id="prod_fuzzProduct00001", merchant=merchant)
    empty_product = ProductFactory(id="prod_fuzzProduct00002", merchant=merchant)
    metric = BillableMetricFactory(id="bm_fuzzMetric0000001", product=product, merchant=merchant)
    fee = FeeFactory(id="fee_fuzzFee000000001", product=product, merchant=merchant)
    plan = PlanFactory(id="plan_fuzzPlan00000001", product=product, merchant=merchant)
    idle_plan = PlanFactory(id="plan_fuzzPlan00000002", product=product, merchant=merchant)
    metered = MeteredPriceFactory(id="price_fuzzPrice000001", plan=plan, billable_metric=metric, merchant=merchant)
    fee_price = FeePriceFactory(id="price_fuzzPrice000002", plan=plan, fee=fee, merchant=merchant)
    graduated = MeteredPriceFactory(
        id="price_fuzzPrice000003",
        plan=None,
        billable_metric=metric,
        merchant=merchant,
        model=models.PriceModel.GRADUATED,
        unit_price=None,
        free_units=Decimal("100"),
        minimum_commitment=Decimal("10"),
    )
    PriceTierFactory(price=graduated, up_to=Decimal("1000"), unit_price=Decimal("0.002"))
    PriceTierFactory(price=graduated, up_to=None, unit_price=Decimal("0.001"), flat_fee=Decimal("5"))
    package = MeteredPriceFactory(
        id="price_fuzzPrice000004",
        plan=None,
        billable_metric=metric,
        merchant=merchant,
        model=models.PriceModel.PACKAGE,
        unit_price=Decimal("2"),
        package_size=Decimal("1000"),
    )
    customer = CustomerFactory(id="cus_fuzzCustomer0001", merchant=merchant, external_id="fuzz-1")
    idle_customer = CustomerFactory(id="cus_fuzzCustomer0002", merchant=merchant)
    SubscriptionFactory(
        id="sub_fuzzSubscript0001",
        plan=plan,
        customer=customer,
        merchant=merchant,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
    )

    commitment = Commitment.objects.create(
        id="cmt_fuzzCommitment01",
        merchant=merchant,
        customer=customer,
        currency="USD",
        amount=Decimal("100"),
        term_start=datetime(2026, 1, 1, tzinfo=UTC),
        term_end=datetime(2027, 1, 1, tzinfo=UTC),
    )

    rival = MerchantFactory(id=RIVAL_MERCHANT_ID, name="Rival Labs")
    rival_product = ProductFactory(id="prod_fuzzRivalProd001", merchant=rival)

    prices = [metered.id, fee_price.id, graduated.id, package.id]
    return Seeds(
        raw_key=raw_key,
        by_collection={
            "products": [product.id, empty_product.id, rival_product.id],
            "billableMetrics": [metric.id],
            "fees": [fee.id],
            "prices": prices,
            "plans": [plan.id, idle_plan.id],
            "customers": [customer.id, idle_customer.id],
            "subscriptions": ["sub_fuzzSubscript0001"],
            "commitments": [commitment.id],
        },
        by_field={
            "merchantId": merchant.id,
            "organizationId": merchant.id,
            "productId": product.id,
            "billableMetricId": metric.id,
            "feeId": fee.id,
            "planId": idle_plan.id,
            "priceId": graduated.id,
            "customerId": customer.id,
            "consumerId": idle_customer.id,
        },
    )


def _stable_choice(case, salt: str, options: list):
    """A choice that depends only on what was generated, so a derandomized run is reproducible."""
    parts = [salt, case.operation.label, case.path_parameters, case.query, _jsonable(case.body)]
    digest = zlib.crc32(json.dumps(parts, sort_keys=True, default=repr).encode())
    return options[digest % len(options)]


def _jsonable(body):
    try:
        json.dumps(body)
    except (TypeError, ValueError):
        return repr(body)
    return body


def point_at_seeds(case, seeds: Seeds) -> None:
    """Rewrite about half of the generated ids to seeded ones, so validation and conflicts get exercised
    and not only "404 unknown id". The rest keep the generated (mostly unknown, often ill-typed) values."""
    if case.path_parameters and "id" in case.path_parameters:
        collection = case.operation.path.strip("/").split("/")[1] if case.operation.path.count("/") >= 2 else ""
        choices = seeds.by_collection.get(collection) or seeds.all_ids
        if _stable_choice(case, "path", [True, False]):
            case.path_parameters["id"] = _stable_choice(case, "path-id", choices)
    if case.query:
        for name in list(case.query):
            if name in seeds.by_field and _stable_choice(case, f"query-{name}", [True, True, False]):
                case.query[name] = seeds.by_field[name]
    if isinstance(case.body, dict):
        for name in list(case.body):
            if name in seeds.by_field and _stable_choice(case, f"body-{name}", [True, True, False]):
                case.body[name] = seeds.by_field[name]
        if "prices" in case.body and _stable_choice(case, "body-prices", [True, False]):
            case.body["prices"] = [seeds.by_field["priceId"]]


# Values schemathesis rarely puts in a path or query string, each of which once crashed some endpoint:
# a null character (PostgreSQL refuses it), an integer past 64 bits (SQL OFFSET), a slash in an id.
HOSTILE_VALUES = ["\x00", "id\x00", "9" * 25, "-9" * 12, "a/b", "%", " ", "\u202e"]


def add_hostile_values(case) -> None:
    """Put a hostile value into the path id or one query parameter of about one case in four."""
    if not _stable_choice(case, "hostile", [True, False, False, False]):
        return
    targets = [("path", "id")] if "id" in (case.path_parameters or {}) else []
    targets += [("query", name) for name in sorted(case.query or {})]
    targets += [("query", name) for name in ("limit", "offset") if name not in (case.query or {})]
    if case.method.upper() != "GET":
        targets = [t for t in targets if t[1] not in ("limit", "offset")]
    if not targets:
        return
    where, name = _stable_choice(case, "hostile-target", targets)
    if where == "path":
        # A slash in an id is a routing matter (another URL, answered 404 before authentication or method
        # checks run; test_fuzz_findings.py covers it): in a path it would fail the auth and method checks
        # for a reason that is not the operation's.
        value = _stable_choice(case, "hostile-value", [v for v in HOSTILE_VALUES if "/" not in v])
        case.path_parameters[name] = value
    else:
        value = _stable_choice(case, "hostile-value", HOSTILE_VALUES)
        case.query = {**(case.query or {}), name: value}


class ErrorShapeViolation(AssertionError):
    pass


def error_body_shape(ctx, response, case) -> bool | None:
    """Every 4xx is JSON in the client's error shape: ``{message, error, code?, errors?: [{field, message}]}``."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    if not content_type.startswith("application/json"):
        raise ErrorShapeViolation(
            f"{response.status_code} answered with {content_type!r}, not JSON: {response.text[:200]!r}"
        )
    body = response.json()
    problems = []
    if not isinstance(body, dict):
        problems.append("the body is not an object")
    else:
        for key in ("message", "error"):
            if not isinstance(body.get(key), str) or not body.get(key):
                problems.append(f"{key!r} is missing or not a non-empty string")
        if "code" in body and not isinstance(body["code"], str):
            problems.append("'code' is not a string")
        if "errors" in body:
            items = body["errors"]
            if not isinstance(items, list) or not items:
                problems.append("'errors' is not a non-empty list")
            else:
                for item in items:
                    if not (
                        isinstance(item, dict)
                        and isinstance(item.get("field"), str)
                        and isinstance(item.get("message"), str)
                    ):
                        problems.append(f"'errors' item {item!r} lacks field/message strings")
    if problems:
        raise ErrorShapeViolation(f"{response.status_code} body {body!r}: " + "; ".join(problems))
    return True


class FuzzTally:
    """Counts for a long fuzz run outside CI: requests sent (probes included), cases, and every failure
    by operation and check, written as JSON at exit. Without a path it records nothing and failures raise."""

    def __init__(self, path: str | None):
        self.path = path
        self.requests = 0
        self.failures: dict[str, dict[str, int]] = {}
        self.samples: dict[str, str] = {}
        if path:
            atexit.register(self.write)

    def count_request(self, **kwargs) -> None:
        self.requests += 1

    def record(self, case, exc) -> bool:
        """Record the failures of ``exc``; True when recorded (the run goes on), False when it must raise."""
        if not self.path:
            return False
        failures = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
        mode = case.meta.generation.mode.value if case.meta is not None else "explicit"
        for failure in failures:
            key = f"{case.operation.label} [{mode}] {getattr(failure, 'title', type(failure).__name__)}"
            per_operation = self.failures.setdefault(key, {})
            status = str(getattr(failure, "status_code", "") or "")
            per_operation[status] = per_operation.get(status, 0) + 1
            self.samples.setdefault(key, f"{case.as_curl_command()}\n{failure}"[:1500])
        return True

    def write(self) -> None:
        operations = {key.split(" [", 1)[0] for key in self.failures}
        summary = {
            "requests": self.requests,
            "failingOperations": len(operations),
            "failures": sum(sum(counts.values()) for counts in self.failures.values()),
            "byOperationAndCheck": self.failures,
            "samples": self.samples,
        }
        with open(self.path, "w") as handle:
            json.dump(summary, handle, indent=2, sort_keys=True)


def positive_data_acceptance_outside_bodies(ctx, response, case) -> bool | None:
    """schemathesis's ``positive_data_acceptance``, except that a schema-valid request *body* may be refused
    with a 400 naming its fields: a body can break a rule no JSON schema states (an id of the merchant's that
    does not exist, a price model's required properties, an end before a start, a currency or time zone
    the tables do not hold). Query strings and path ids have no such excuse: their schema-valid values are
    always accepted (2xx, or 404 for an unknown id, 409, 401/403), except for a rule between parameters,
    refused with the code ``parameter_combination``."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code == 400:
        if _business_code(response) in STATE_CONFLICT_CODES:
            return True  # a state conflict the client declares as a 400 (enabling webhooks twice)
        errors = _error_items(response)
        if errors and all(error.get("code") == PARAMETER_COMBINATION for error in errors):
            return True  # query parameters each valid but not together (described, not expressible in 3.0)
        named = {str(error.get("field", "")).split(".")[0].split("[")[0] for error in errors}
        if case.body is not NOT_SET and named and not named & set(case.query or {}):
            return True
    return positive_data_acceptance(ctx, response, case)


# Conflicts with the state that the Paygentic client declares as 400 rather than 409 (webhooks.enable when a
# configuration exists): a schema-valid request may meet one whatever its values.
STATE_CONFLICT_CODES = {"DUPLICATE_RESOURCE"}


def _business_code(response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


def _error_items(response) -> list[dict]:
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return []
    return [error for error in errors if isinstance(error, dict)]

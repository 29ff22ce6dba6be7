"""/v0/costs, /v0/costs/{id}/summary and /v0/profitability through DRF's APIClient: shapes, bounds, scoping."""

from __future__ import annotations

from datetime import timedelta

import pytest

from costs.models import MAX_COSTS_PER_MERCHANT, Cost
from metering.models import UsageEvent
from tests.factories import CustomerFactory, ProductFactory, SubscriptionFactory
from tests.invoicing.factories import record_usage
from tests.invoicing.receivables import issued

from .conftest import FEB_1, JAN_1, gpu_cost

pytestmark = pytest.mark.django_db

PERIOD = {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}


def _body(product, **changes) -> dict:
    return {
        "type": "metered",
        "name": "GPU time",
        "unitCost": "0.0005",
        "currency": "usd",
        "productId": product.id,
        "aggregation": "SUM",
        "eventType": "gpu.job",
        "unit": "GPU-seconds",
        "valueProperty": "$.seconds",
        "groupBy": {"gpu": "$.gpu"},
        **changes,
    }


def test_a_cost_is_created_read_listed_updated_and_deleted(api, merchant, gpu_product):
    # when
    status, created = api.post("/v0/costs", _body(gpu_product, merchantId=merchant.id))

    # then
    assert status == 201, created
    assert {k: v for k, v in created.items() if k not in ("id", "createdAt", "updatedAt")} == {
        "object": "cost",
        "type": "metered",
        "name": "GPU time",
        "currency": "USD",
        "unitCost": "0.0005",
        "productId": gpu_product.id,
        "merchantId": merchant.id,
        "unit": "GPU-seconds",
        "aggregation": "SUM",
        "eventType": "gpu.job",
        "valueProperty": "$.seconds",
        "groupBy": {"gpu": "$.gpu"},
        "deletedAt": None,
    }
    assert created["id"].startswith("cost_")
    assert api.get(f"/v0/costs/{created['id']}") == (200, created)

    status, listed = api.get("/v0/costs", productId=gpu_product.id)
    assert (status, listed["object"], listed["pagination"]) == (200, "list", {"limit": 10, "offset": 0, "total": 1})

    status, updated = api.patch(f"/v0/costs/{created['id']}", {"unitCost": 0.00075, "unit": None, "groupBy": None})
    assert status == 200, updated
    assert (updated["unitCost"], updated["unit"], updated["groupBy"]) == ("0.00075", None, None)

    assert api.delete(f"/v0/costs/{created['id']}") == (204, None)
    assert api.get(f"/v0/costs/{created['id']}")[0] == 404
    assert api.get("/v0/costs")[1]["pagination"]["total"] == 0
    assert Cost.objects.get(pk=created["id"]).deleted_at is not None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"unitCost": "-0.01"}, "unitCost"),
        ({"unitCost": "0.0000000000001"}, "unitCost"),  # 13 places
        ({"unitCost": "1e16"}, "unitCost"),
        ({"currency": "XYZ"}, "currency"),
        ({"aggregation": "MEDIAN"}, "aggregation"),
        ({"type": "manual"}, "type"),
        ({"valueProperty": ""}, "valueProperty"),  # a SUM needs a value
        ({"valueProperty": "seconds"}, "valueProperty"),
        ({"name": "x" * 201}, "name"),
        ({"groupBy": {f"d{n}": "$.d" for n in range(6)}}, "groupBy"),
        ({"groupBy": {"subject": "$.s"}}, "groupBy"),
        ({"productId": "prod_nope"}, "productId"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api, gpu_product, changes, field):
    status, body = api.post("/v0/costs", _body(gpu_product, **changes))

    assert status == 400, body
    assert field in {e["field"] for e in body["errors"]}


def test_a_merchant_may_define_a_bounded_number_of_costs(api, gpu_product):
    for n in range(MAX_COSTS_PER_MERCHANT):
        gpu_cost(gpu_product, name=f"GPU {n}")

    status, body = api.post("/v0/costs", _body(gpu_product))

    assert (status, body["code"]) == (409, "COST_LIMIT_REACHED")


def test_another_merchants_costs_are_not_found_and_its_id_is_refused(api, rival, other_merchant, gpu_product):
    theirs = gpu_cost(ProductFactory(merchant=other_merchant))

    assert api.get(f"/v0/costs/{theirs.id}")[0] == 404
    assert api.patch(f"/v0/costs/{theirs.id}", {"name": "mine"})[0] == 404
    assert api.delete(f"/v0/costs/{theirs.id}")[0] == 404
    assert api.get(f"/v0/costs/{theirs.id}/summary", **PERIOD)[0] == 404
    assert api.get("/v0/costs", merchantId=other_merchant.id)[0] == 403
    assert api.post("/v0/costs", _body(gpu_product, merchantId=other_merchant.id))[0] == 403
    assert rival.get("/v0/costs")[1]["pagination"]["total"] == 1


def test_summary_gives_the_total_groups_and_windows_of_a_cost(api, merchant, gpu_product):
    # given: 600 s on an A100 and 400 s on an H100 in January; 10,000 s in February
    cost = gpu_cost(gpu_product)
    customer = CustomerFactory(merchant=merchant)
    record_usage(customer, cost, JAN_1 + timedelta(hours=1), 600, gpu="a100")
    record_usage(customer, cost, JAN_1 + timedelta(days=1), 400, gpu="h100")
    record_usage(customer, cost, FEB_1, 10_000, gpu="a100")

    # when
    status, body = api.get(f"/v0/costs/{cost.id}/summary", groupBy="gpu", window="DAY", subject=customer.id, **PERIOD)

    # then: 1,000 GPU-seconds × $0.0005 = $0.50
    assert status == 200, body
    assert (body["totalQuantity"], body["totalCost"], body["currency"]) == (1000, 0.5, "USD")
    assert body["groups"] == [
        {"dimensions": {"gpu": "a100"}, "quantity": 600, "cost": 0.3},
        {"dimensions": {"gpu": "h100"}, "quantity": 400, "cost": 0.2},
    ]
    assert body["timeSeries"] == [
        {"windowStart": "2026-01-01T00:00:00Z", "windowEnd": "2026-01-02T00:00:00Z", "quantity": 600, "cost": 0.3},
        {"windowStart": "2026-01-02T00:00:00Z", "windowEnd": "2026-01-03T00:00:00Z", "quantity": 400, "cost": 0.2},
    ]
    filtered = api.get(f"/v0/costs/{cost.id}/summary", filterGroupBy='{"gpu": "h100"}', **PERIOD)[1]
    assert (filtered["totalQuantity"], filtered["totalCost"]) == (400, 0.2)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
        ({"from": "2024-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z", "window": "MINUTE"}, "window"),
        ({"from": "yesterday", "to": "2026-02-01T00:00:00Z"}, "from"),
        ({"to": "2026-02-01T00:00:00Z"}, "from"),
        ({**PERIOD, "window": "WEEK"}, "window"),
        ({**PERIOD, "groupBy": "region"}, "groupBy"),
        ({**PERIOD, "filterGroupBy": "[1]"}, "filterGroupBy"),
    ],
)
def test_summary_refuses_unbounded_or_unknown_queries(api, gpu_product, query, field):
    cost = gpu_cost(gpu_product)

    status, body = api.get(f"/v0/costs/{cost.id}/summary", **query)

    assert status == 400, body
    assert field in {e["field"] for e in body["errors"]}


def test_summary_for_an_unknown_customer_is_not_found(api, gpu_product):
    cost = gpu_cost(gpu_product)

    assert api.get(f"/v0/costs/{cost.id}/summary", subject="cus_nope", **PERIOD)[0] == 404


def test_profitability_per_customer_with_hand_worked_figures(api, merchant, gpu_product):
    # given: 1,000 GPU-seconds at $0.0005 = $0.50 against $2.00 invoiced for January
    cost = gpu_cost(gpu_product)
    subscription = SubscriptionFactory(
        merchant=merchant, customer__merchant=merchant, customer__name="Acme", plan__product=gpu_product
    )
    CustomerFactory(merchant=merchant, name="Dormant")
    record_usage(subscription.customer, cost, JAN_1, 1000, gpu="a100")
    issued(subscription, "2.00", now=JAN_1 + timedelta(days=20))

    # when
    status, body = api.get("/v0/profitability", merchantId=merchant.id, includeEmpty="true", **PERIOD)

    # then
    assert status == 200, body
    assert body["rows"] == [
        {
            "customerId": subscription.customer_id,
            "customerName": "Acme",
            "netRevenue": "2.00",
            "totalCost": "0.50",
            "profit": "1.50",
            "marginPct": "75.00",
            "costData": "recorded",
        }
    ]
    assert (body["object"], body["currency"], body["customerCount"], body["emptyCustomerCount"]) == (
        "profitability_summary",
        "USD",
        1,
        1,
    )
    assert [row["customerName"] for row in body["emptyCustomers"]] == ["Dormant"]
    assert "revenueRange" not in body and "costRange" not in body  # absent: not resolved (the client's reading)
    assert body["unloadedCustomerCount"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"topN": "0"}, "topN"),
        ({"topN": "101"}, "topN"),
        ({"currency": "DOLLARS"}, "currency"),
        ({"from": "2024-01-01T00:00:00Z"}, "to"),
    ],
)
def test_profitability_refuses_out_of_bounds_queries(api, merchant, query, field):
    status, body = api.get("/v0/profitability", merchantId=merchant.id, **{**PERIOD, **query})

    assert status == 400, body
    assert field in {e["field"] for e in body["errors"]}


def test_profitability_needs_the_callers_merchant(api, other_merchant):
    assert api.get("/v0/profitability", **PERIOD)[0] == 400
    assert api.get("/v0/profitability", merchantId=other_merchant.id, **PERIOD)[0] == 403


def test_profitability_ranks_by_profit_and_rolls_the_rest_into_other(api, merchant, gpu_product):
    # given: three customers invoiced $3, $2 and $1 in January, no cost
    for amount in ("1.00", "3.00", "2.00"):
        subscription = SubscriptionFactory(
            merchant=merchant, customer__merchant=merchant, customer__name=f"Paid {amount}", plan__product=gpu_product
        )
        issued(subscription, amount, now=JAN_1 + timedelta(days=5))

    # when
    status, body = api.get("/v0/profitability", merchantId=merchant.id, topN="1", excludeEmpty="true", **PERIOD)

    # then
    assert status == 200, body
    assert [(r["customerName"], r["profit"], r["marginPct"], r["costData"]) for r in body["rows"]] == [
        ("Paid 3.00", "3.00", None, "none"),  # no margin over a cost nobody recorded
        ("Other", "3.00", None, "none"),
    ]
    assert (body["customerCount"], body["unloadedCustomerCount"], body["emptyCustomerCount"]) == (3, None, 0)
    assert "emptyCustomers" not in body
    assert body["warnings"] == ["No cost is defined in USD: costs count as zero."]


def test_the_other_row_says_partial_when_only_some_of_its_customers_have_cost_data(api, merchant, gpu_product):
    # given: invoiced in January Acme $5.00, Brio $2.00, Cato $1.00; GPU-seconds at $0.0005: Acme 1,000
    # ($0.50), Brio 400 ($0.20), Cato none
    cost = gpu_cost(gpu_product)
    customers = {}
    for name, amount, seconds in (("Acme", "5.00", 1000), ("Brio", "2.00", 400), ("Cato", "1.00", 0)):
        subscription = SubscriptionFactory(
            merchant=merchant, customer__merchant=merchant, customer__name=name, plan__product=gpu_product
        )
        issued(subscription, amount, now=JAN_1 + timedelta(days=5))
        if seconds:
            record_usage(subscription.customer, cost, JAN_1 + timedelta(days=1), seconds, gpu="a100")
        customers[name] = subscription.customer

    def rows(top_n: str) -> list[tuple]:
        status, body = api.get("/v0/profitability", merchantId=merchant.id, topN=top_n, **PERIOD)
        assert status == 200, body
        return [(r["customerName"], r["profit"], r["marginPct"], r["costData"]) for r in body["rows"]]

    # when / then: Other folds Brio (recorded) and Cato (not): $3.00 − $0.20 = $2.80, partial, no margin (a
    # margin over Cato's unrecorded cost would overstate it)
    assert rows("1") == [("Acme", "4.50", "90.00", "recorded"), ("Other", "2.80", None, "partial")]
    # Other folds Cato alone: none
    assert rows("2")[2] == ("Other", "1.00", None, "none")

    # when Cato's 200 GPU-seconds ($0.10) are recorded, every customer Other folds has cost data:
    # $3.00 − $0.30 = $2.70, margin 90.00 %
    record_usage(customers["Cato"], cost, JAN_1 + timedelta(days=2), 200, gpu="a100")
    assert rows("1")[1] == ("Other", "2.70", "90.00", "recorded")


def test_an_empty_profitability_period_says_where_revenue_and_cost_lie(api, merchant, gpu_product):
    # given: Acme ran 1,000 GPU-seconds on 1 January and was invoiced $2.00 on the 21st; a GPU event of
    # 5 January names no customer
    cost = gpu_cost(gpu_product)
    subscription = SubscriptionFactory(
        merchant=merchant, customer__merchant=merchant, customer__name="Acme", plan__product=gpu_product
    )
    record_usage(subscription.customer, cost, JAN_1, 1000, gpu="a100")
    UsageEvent.objects.create(
        merchant=merchant,
        external_subject="nobody",
        event_type=cost.event_type,
        timestamp=JAN_1 + timedelta(days=4),
        received_at=JAN_1 + timedelta(days=4),
        idempotency_key="unattributed",
        data={"seconds": "10"},
    )
    issued(subscription, "2.00", now=JAN_1 + timedelta(days=20))
    march = {"from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"}

    # when
    status, empty = api.get("/v0/profitability", merchantId=merchant.id, **march)
    in_euros = api.get("/v0/profitability", merchantId=merchant.id, currency="EUR", **march)[1]
    january = api.get("/v0/profitability", merchantId=merchant.id, **PERIOD)[1]

    # then: where each lies (both bounds included); the unattributed event is not a cost profitability counts
    assert status == 200, empty
    assert empty["revenueRange"] == {"from": "2026-01-21T00:00:00Z", "to": "2026-01-21T00:00:00Z"}
    assert empty["costRange"] == {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
    # null: nothing at any time in EUR; absent: the period held both
    assert (in_euros["revenueRange"], in_euros["costRange"]) == (None, None)
    assert "revenueRange" not in january and "costRange" not in january

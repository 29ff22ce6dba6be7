"""A price that refuses values it has no rate for: ingestion answers 400 on the property for such events, but
only for the customers that price bills at the event's timestamp (issue #23: "a refusal, per price").

Two plans bill the metric ``llm.completion``: plan A's price prices nle-small and nle-large and refuses any
other model; plan B's prices the same two and charges any other model at its own rate ($0.000002). Alice is
on A, Bob on B.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import Price, SubscriptionStatus
from catalog.services import VersionLine, plan_version_mint
from invoicing.models import Invoice, InvoiceKind, LineKind
from invoicing.services import billing_run_execute, subscription_start
from invoicing.services.lifecycle import subscription_terminate, subscription_upgrade
from metering.models import UsageEvent
from tests.factories import (
    CustomerFactory,
    MeteredPriceFactory,
    NegotiatedPriceFactory,
    PlanFactory,
    SubscriptionFactory,
)

pytestmark = pytest.mark.django_db

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
JAN_10 = datetime(2026, 1, 10, tzinfo=UTC)
JAN_15 = datetime(2026, 1, 15, tzinfo=UTC)
JAN_20 = datetime(2026, 1, 20, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
FEB_5 = datetime(2026, 2, 5, tzinfo=UTC)

PRICED = [
    {"values": {"model": "nle-small"}, "model": "standard", "unitPrice": "0.000001"},
    {"values": {"model": "nle-large"}, "model": "standard", "unitPrice": "0.000004"},
]
REFUSE = {"dimensions": ["model"], "unmatched": "refuse", "rates": PRICED}
DEFAULT = {"dimensions": ["model"], "unmatched": "default", "rates": PRICED}
REFUSAL = "has no rate on the price “Input tokens A”; priced values: nle-large, nle-small."


def _plan(metric, name, rates, display):
    plan = PlanFactory(merchant=metric.merchant, product=metric.product, name=name)
    MeteredPriceFactory(
        plan=plan,
        merchant=metric.merchant,
        billable_metric=metric,
        unit_price=Decimal("0.000002"),
        invoice_display_name=display,
        plan_line_key="input",
        dimensional_rates=rates,
    )
    return plan


@pytest.fixture
def plans(input_tokens):
    return _plan(input_tokens, "A", REFUSE, "Input tokens A"), _plan(input_tokens, "B", DEFAULT, "Input tokens B")


def _customer(merchant, name, plan=None):
    customer = CustomerFactory(merchant=merchant, name=name)
    if plan is not None:
        subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    return customer


@pytest.fixture
def alice(merchant, plans):
    return _customer(merchant, "Alice", plans[0])


@pytest.fixture
def bob(merchant, plans):
    return _customer(merchant, "Bob", plans[1])


def _event(customer, key=None, tokens=5, at=JAN_10, **data):
    event = {
        "type": "llm.completion",
        "source": "app",
        "subject": customer.pk,
        "timestamp": at.isoformat(),
        "data": {"input_tokens": tokens, **data},
    }
    if key:
        event["idempotencyKey"] = key
    return event


def _post(api_client, event):
    return api_client.post("/v0/events", event, format="json")


def _errors(response) -> dict[str, str]:
    return {e["field"]: e["message"] for e in response.json()["errors"]}


def test_a_priced_model_is_accepted(api_client, alice):
    assert _post(api_client, _event(alice, model="nle-large")).status_code == 202
    assert UsageEvent.objects.count() == 1


@pytest.mark.parametrize("data", [{"model": "nle-xl"}, {}, {"model": 7}])
def test_the_refusing_plans_customer_is_refused_on_the_property(api_client, alice, data):
    response = _post(api_client, _event(alice, **data))
    assert response.status_code == 400
    assert REFUSAL in _errors(response)["data.model"]
    assert not UsageEvent.objects.exists()


def test_the_other_plans_customer_is_accepted_and_billed_at_its_default_rate(api_client, alice, bob):
    # given Bob sends 50,000 tokens of a model no rate names and 20,000 of nle-small
    assert _post(api_client, _event(bob, "b-1", tokens=50_000, model="nle-xl")).status_code == 202
    assert _post(api_client, _event(bob, "b-2", tokens=20_000, model="nle-small")).status_code == 202
    # when
    billing_run_execute(as_of=FEB_1)
    # then 20,000 × $0.000001 = $0.02; the other values at B's own rate: 50,000 × $0.000002 = $0.10
    invoice = Invoice.objects.get(customer=bob, kind=InvoiceKind.RECURRING)
    lines = invoice.lines.filter(kind=LineKind.USAGE).order_by("position", "pk")
    assert [(line.description.split(":")[0], line.amount) for line in lines] == [
        ("Input tokens B — model=nle-small", Decimal("0.02")),
        ("Input tokens B — other values", Decimal("0.10")),
    ]
    assert invoice.subtotal == Decimal("0.12")


def test_a_batch_keeps_the_other_plans_events_and_refuses_the_refusing_plans(api_client, alice, bob):
    batch = [
        _event(alice, "a-xl", model="nle-xl"),
        _event(bob, "b-xl", model="nle-xl"),
        _event(alice, "a-small", model="nle-small"),
        _event(bob, "b-none"),
    ]
    response = api_client.post("/v0/events/batch", batch, format="json")
    assert response.status_code == 200, response.content
    items = response.json()["results"]
    assert [item["status"] for item in items] == ["rejected", "accepted", "accepted", "accepted"]
    assert REFUSAL in {e["field"]: e["message"] for e in items[0]["errors"]}["data.model"]
    assert set(UsageEvent.objects.values_list("idempotency_key", flat=True)) == {"b-xl", "a-small", "b-none"}


def test_a_customer_named_by_external_id_is_refused_like_by_id(api_client, merchant, plans):
    erin = CustomerFactory(merchant=merchant, name="Erin", external_id="erin-7")
    subscription_start(customer=erin, plan=plans[0], started_at=JAN_1, now=JAN_1)
    event = _event(erin, model="nle-xl")
    del event["subject"]
    event["externalSubject"] = "erin-7"
    response = _post(api_client, event)
    assert response.status_code == 400
    assert REFUSAL in _errors(response)["data.model"]


def test_a_customer_without_a_subscription_is_accepted(api_client, merchant, plans):
    # nothing would bill its usage with plan A's price, so nothing refuses it
    nobody = _customer(merchant, "Nobody")
    assert _post(api_client, _event(nobody, model="nle-xl")).status_code == 202


def test_a_subscription_pending_its_first_payment_bills_nothing_yet(api_client, merchant, plans):
    gina = CustomerFactory(merchant=merchant, name="Gina")
    SubscriptionFactory(plan=plans[0], customer=gina, started_at=JAN_1, status=SubscriptionStatus.PENDING_PAYMENT)
    assert _post(api_client, _event(gina, model="nle-xl")).status_code == 202


def test_a_terminated_subscription_refuses_only_while_it_ran(api_client, alice):
    subscription = alice.subscriptions.get()
    subscription_terminate(subscription=subscription, now=JAN_15)
    # before the termination plan A billed Alice: refused; after it nothing bills her: accepted
    assert _post(api_client, _event(alice, "before", at=JAN_10, model="nle-xl")).status_code == 400
    assert _post(api_client, _event(alice, "after", at=JAN_20, model="nle-xl")).status_code == 202
    assert list(UsageEvent.objects.values_list("idempotency_key", flat=True)) == ["after"]


def test_before_the_subscription_starts_nothing_refuses(api_client, alice):
    before = JAN_1 - timedelta(days=3)
    assert _post(api_client, _event(alice, at=before, model="nle-xl")).status_code == 202


def test_a_plan_change_moves_the_refusal_with_the_plan(api_client, merchant, plans, bob):
    # given Frank on plan B, moved to plan A on Jan 15 (the plan-change invoice settles B's usage to then)
    frank = _customer(merchant, "Frank", plans[1])
    subscription_upgrade(subscription=frank.subscriptions.get(), new_plan=plans[0], now=JAN_15)
    # then from the change plan A's price bills him: refused; a late event from before it is billed by
    # neither plan (B's usage up to the change is invoiced already, A bills from the change): accepted
    assert _post(api_client, _event(frank, "after", at=JAN_20, model="nle-xl")).status_code == 400
    assert _post(api_client, _event(frank, "before", at=JAN_10, model="nle-xl")).status_code == 202


def test_a_negotiated_rate_without_dimensions_lifts_the_refusal_for_its_customer(api_client, merchant, plans, alice):
    # given Carol is on plan A too, with a negotiated flat rate over its refusing price
    carol = _customer(merchant, "Carol", plans[0])
    refusing = Price.objects.get(plan=plans[0])
    NegotiatedPriceFactory(overrides=refusing, customer=carol, merchant=merchant, dimensional_rates=None)
    # then Carol's unpriced model is accepted (her rate bills it), Alice's still refused
    assert _post(api_client, _event(carol, model="nle-xl")).status_code == 202
    assert _post(api_client, _event(alice, model="nle-xl")).status_code == 400


def test_a_negotiated_rate_lifts_the_refusal_only_for_the_periods_its_window_covers(api_client, merchant, plans):
    # given Hal on plan A with a flat negotiated rate for the periods starting from February 1
    hal = _customer(merchant, "Hal", plans[0])
    refusing = Price.objects.get(plan=plans[0])
    NegotiatedPriceFactory(
        overrides=refusing, customer=hal, merchant=merchant, dimensional_rates=None, effective_from=FEB_1
    )
    # then January's period is rated by plan A's refusing price, February's by his rate
    assert _post(api_client, _event(hal, "jan", at=JAN_20, model="nle-xl")).status_code == 400
    assert _post(api_client, _event(hal, "feb", at=FEB_5, model="nle-xl")).status_code == 202


def test_a_negotiated_refusing_rate_refuses_only_its_customer(api_client, merchant, plans, bob):
    # given Dave is on plan B with a negotiated rate over B's price that refuses unmatched models
    dave = _customer(merchant, "Dave", plans[1])
    default = Price.objects.get(plan=plans[1])
    NegotiatedPriceFactory(
        overrides=default, customer=dave, merchant=merchant, invoice_display_name="Dave's", dimensional_rates=REFUSE
    )
    dave_response = _post(api_client, _event(dave, model="nle-xl"))
    assert dave_response.status_code == 400
    assert "has no rate on the price “Dave's”" in _errors(dave_response)["data.model"]
    assert _post(api_client, _event(bob, model="nle-xl")).status_code == 202


def test_a_new_plan_version_lifts_the_refusal_from_the_next_period(api_client, merchant, plans, alice):
    # given plan A versioned, then (Jan 15) a version 2 whose price charges unmatched models at its own rate
    plan = plans[0]
    refusing = Price.objects.get(plan=plan)
    plan_version_mint(plan=plan, lines=[VersionLine(refusing.pk, "input")], now=JAN_1 - timedelta(days=30))
    plan.refresh_from_db()
    relaxed = MeteredPriceFactory(
        plan=None,
        merchant=merchant,
        billable_metric=refusing.billable_metric,
        unit_price=Decimal("0.000002"),
        invoice_display_name="Input tokens A2",
        dimensional_rates=DEFAULT,
    )
    plan_version_mint(
        plan=plan, lines=[VersionLine(relaxed.pk, "input")], based_on_version_id=plan.default_version_id, now=JAN_15
    )
    # then Alice (floating) is billed by version 1 in January's period and by version 2 from February's
    assert _post(api_client, _event(alice, "jan", at=JAN_20, model="nle-xl")).status_code == 400
    assert _post(api_client, _event(alice, "feb", at=FEB_5, model="nle-xl")).status_code == 202


def test_a_price_that_prices_other_values_at_its_own_rate_refuses_nothing(api_client, alice, plans):
    refusing = Price.objects.get(plan=plans[0])
    refusing.dimensional_rates = DEFAULT
    refusing.save()
    assert _post(api_client, _event(alice, model="nle-xl")).status_code == 202


# --- statement counts -------------------------------------------------------------------------------


def test_an_event_every_refusing_price_names_costs_nothing_more(api_client, alice, bob, django_assert_num_queries):
    assert _post(api_client, _event(bob, "warm", model="nle-small")).status_code == 202  # caches warm
    with django_assert_num_queries(1):  # the one-statement insert, as without any refusing price
        assert _post(api_client, _event(alice, "named", model="nle-large")).status_code == 202


def test_an_unmatched_event_costs_one_statement_more(api_client, alice, bob, django_assert_num_queries):
    assert _post(api_client, _event(bob, "warm", model="nle-small")).status_code == 202
    with django_assert_num_queries(2):  # which refusing price bills Bob (none), then the insert
        assert _post(api_client, _event(bob, "other", model="nle-xl")).status_code == 202
    with django_assert_num_queries(1):  # it bills Alice: refused, nothing inserted
        assert _post(api_client, _event(alice, "refused", model="nle-xl")).status_code == 400


def test_a_batch_of_unmatched_events_costs_one_statement_more(api_client, merchant, plans, django_assert_num_queries):
    customers = [_customer(merchant, f"C{i}", plans[i % 2]) for i in range(4)]
    matched = [_event(c, f"m-{i}", model="nle-small") for i, c in enumerate(customers)]
    unmatched = [_event(c, f"u-{i}", model="nle-xl") for i, c in enumerate(customers)]
    warm = [_event(customers[0], "warm", model="nle-small")]
    assert api_client.post("/v0/events/batch", warm, format="json").status_code == 200  # caches warm
    with CaptureQueriesContext(connection) as baseline:  # the same batch, every model priced
        assert api_client.post("/v0/events/batch", matched, format="json").status_code == 200
    with django_assert_num_queries(len(baseline) + 1):
        response = api_client.post("/v0/events/batch", unmatched, format="json")
    statuses = [item["status"] for item in response.json()["results"]]
    assert statuses == ["rejected", "accepted", "rejected", "accepted"]

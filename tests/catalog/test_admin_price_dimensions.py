"""Rates per event property on the admin's price page: rows (property, value, price in the "price per" scale,
free units) for finance, the validated JSON editor for what rows cannot say, the engine's messages."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from catalog.admin_forms import PriceAdminForm
from catalog.models import Price
from tests.catalog.test_admin_prices import PRICE_ADD, metric, plan, price_form  # noqa: F401 - fixtures
from tests.factories import MeteredPriceFactory

pytestmark = pytest.mark.django_db

RATES = {
    "dimensions": ["model"],
    "rates": [
        {"values": {"model": "nle-small"}, "model": "standard", "unitPrice": "0.000001"},
        {"values": {"model": "nle-large"}, "model": "standard", "unitPrice": "0.000004"},
    ],
}


def test_finance_saves_a_per_model_price_with_the_price_rate_as_default(superuser_client, plan, metric):  # noqa: F811
    data = price_form(
        {
            "merchant": plan.merchant_id,
            "plan": plan.pk,
            "billable_metric": metric.pk,
            "unit_price": "0.000002",
            "dimensional_rates": json.dumps(RATES),
        }
    )
    response = superuser_client.post(PRICE_ADD, data)
    assert response.status_code == 302
    assert Price.objects.get(plan=plan).dimensional_rates == RATES


def test_the_page_shows_the_example_and_the_engine_message(superuser_client, plan, metric):  # noqa: F811
    broken = {**RATES, "rates": [{"values": {"model": "a"}, "model": "standard"}]}
    data = price_form(
        {
            "merchant": plan.merchant_id,
            "plan": plan.pk,
            "billable_metric": metric.pk,
            "unit_price": "0.000002",
            "dimensional_rates": json.dumps(broken),
        }
    )
    response = superuser_client.post(PRICE_ADD, data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"dimensional_rates": ["Rate 1 (standard) needs unitPrice"]}
    assert "Rates per event property" in response.content.decode()
    assert not Price.objects.exists()


def rows(prop: str, *entries: tuple[str, str, str], unmatched: str = "default") -> dict[str, str]:
    """The rows editor's POST data: the property, one row per (value, price, free units), the unmatched choice."""
    data = {"dimensional_rates": "", "dimensional_rates_property": prop, "dimensional_rates_unmatched": unmatched}
    for index, (value, price, free) in enumerate(entries):
        data |= {
            f"dimensional_rates_value_{index}": value,
            f"dimensional_rates_price_{index}": price,
            f"dimensional_rates_free_{index}": free,
        }
    return data


def per_model_price(plan, metric, **fields) -> dict:  # noqa: F811 - the fixtures passed on
    return price_form(
        {
            "merchant": plan.merchant_id,
            "plan": plan.pk,
            "billable_metric": metric.pk,
            "rate_per": "1000",
            "unit_price": "0.004",
            **fields,
        }
    )


def test_finance_types_a_rate_per_model_as_rows_in_the_price_per_1k_scale(superuser_client, plan, metric):  # noqa: F811
    # nle-small $0.002 / 1K, nle-large $0.006 / 1K with 10,000 free tokens; blank rows are ignored
    data = per_model_price(
        plan, metric, **rows("model", ("nle-small", "0.002", ""), ("nle-large", "0.006", "10,000"), ("", "", ""))
    )

    response = superuser_client.post(PRICE_ADD, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    price = Price.objects.get(plan=plan)
    assert price.unit_price == Decimal("0.000004")
    assert price.dimensional_rates == {
        "dimensions": ["model"],
        "tierScope": "combination",
        "unmatched": "default",
        "rates": [
            {"values": {"model": "nle-small"}, "model": "standard", "unitPrice": "0.000002"},
            {"values": {"model": "nle-large"}, "model": "standard", "unitPrice": "0.000006", "freeUnits": "10000"},
        ],
    }


def test_the_price_page_shows_stored_rates_as_rows_in_its_scale(superuser_client, plan, metric):  # noqa: F811
    superuser_client.post(PRICE_ADD, per_model_price(plan, metric, **rows("model", ("nle-small", "0.002", ""))))
    price = Price.objects.get(plan=plan)

    page = superuser_client.get(reverse("admin:catalog_price_change", args=[quote(price.pk)])).content.decode()

    assert 'name="dimensional_rates_property" id="id_dimensional_rates_property" value="model"' in page
    assert 'name="dimensional_rates_value_0" id="id_dimensional_rates_value_0" value="nle-small"' in page
    assert 'name="dimensional_rates_price_0" id="id_dimensional_rates_price_0" value="0.002"' in page
    assert 'name="dimensional_rates_value_3"' in page and 'name="dimensional_rates_value_4"' not in page  # 3 blank


@pytest.mark.parametrize(
    ("entries", "prop", "message"),
    [
        ((("nle-small", "", ""),), "model", "Row 1: enter the price for model=nle-small."),
        (
            (("", "", ""), ("", "0.002", "")),
            "model",
            "Row 2: enter the value of “model” this price is for, e.g. nle-small.",
        ),
        ((("nle-small", "two", ""),), "model", "Row 1: the price “two” is not a number of 0 or more."),
        ((("nle-small", "0.002", ""),), "", "Name the event property the rates depend on, e.g. model."),
        ((), "model", "Add at least one value of “model” and its price, or clear the property."),
        (
            (("nle-small", "0.0000000000001", ""),),
            "model",
            "Row 1: a price per 1K units has too many decimal places (12 per unit).",
        ),
    ],
)
def test_an_incomplete_row_is_refused_on_the_field(superuser_client, plan, metric, entries, prop, message):  # noqa: F811
    response = superuser_client.post(PRICE_ADD, per_model_price(plan, metric, **rows(prop, *entries)))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"dimensional_rates": [message]}
    assert not Price.objects.exists()


def test_rates_the_rows_cannot_say_stay_json_and_an_unchanged_save_keeps_them(plan, metric):  # noqa: F811
    graduated = {
        "dimensions": ["model"],
        "rates": [
            {
                "values": {"model": "nle-large"},
                "model": "graduated",
                "tiers": [{"upTo": "1000000", "unitPrice": "0.000004"}, {"upTo": None, "unitPrice": "0.000003"}],
            }
        ],
    }
    price = MeteredPriceFactory(plan=plan, billable_metric=metric, unit_price=Decimal("0.000002"))
    Price.objects.filter(pk=price.pk).update(dimensional_rates=graduated)
    price.refresh_from_db()
    unbound = PriceAdminForm(instance=price)
    widget = unbound["dimensional_rates"]

    html = str(widget)

    assert "&quot;graduated&quot;" in html and "<details open>" in html
    assert 'name="dimensional_rates_property" id="id_dimensional_rates_property" value=""' in html
    posted = {**rows(""), "dimensional_rates": json.dumps(graduated)}
    assert not unbound.fields["dimensional_rates"].has_changed(
        price.dimensional_rates, widget.field.widget.value_from_datadict(posted, {}, "dimensional_rates")
    )


def test_rows_typed_as_stored_are_not_a_change(plan, metric):  # noqa: F811
    # what a finance person posts back unchanged for a price stored per unit and shown per 1K
    stored = {
        "dimensions": ["model"],
        "rates": [{"values": {"model": "nle-small"}, "model": "standard", "unitPrice": "0.0000020", "freeUnits": "0"}],
    }
    field = PriceAdminForm().fields["dimensional_rates"]
    field.set_rate_per(1000)
    posted = field.widget.value_from_datadict(rows("model", ("nle-small", "0.002", "")), {}, "dimensional_rates")

    assert not field.has_changed(stored, posted)
    changed = field.widget.value_from_datadict(rows("model", ("nle-small", "0.003", "")), {}, "dimensional_rates")
    assert field.has_changed(stored, changed)


def test_a_value_listed_twice_gets_the_engines_message(superuser_client, plan, metric):  # noqa: F811
    entries = (("nle-small", "0.002", ""), ("nle-small", "0.003", ""))

    response = superuser_client.post(PRICE_ADD, per_model_price(plan, metric, **rows("model", *entries)))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"dimensional_rates": ["Combination 2 repeats model=nle-small"]}
    assert not Price.objects.exists()

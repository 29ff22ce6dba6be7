"""Rates per event property on the admin's price page: rows (property, value, price in the "price per" scale,
free units) for finance, the validated JSON editor for what rows cannot say, the engine's messages."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from catalog.admin_dimensional import TypedRates, TypedRow, rates_per_unit, rows_of, rows_to_rates
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


def rows(prop: str | tuple[str, ...], *entries: tuple, unmatched: str = "default") -> dict[str, str]:
    """The rows editor's POST data: the property (or up to three), one row per (value, price, free units) (the
    value a tuple, one per property, when there are several) and the unmatched choice."""
    props = (prop,) if isinstance(prop, str) else prop
    suffixes = ("", "2", "3")
    data = {"dimensional_rates": "", "dimensional_rates_unmatched": unmatched}
    data |= {f"dimensional_rates_property{suffix}": name for suffix, name in zip(suffixes, props, strict=False)}
    for index, (value, price, free) in enumerate(entries):
        values = (value,) if isinstance(value, str) else value
        data |= {
            f"dimensional_rates_value{suffix}_{index}": item for suffix, item in zip(suffixes, values, strict=False)
        }
        data |= {f"dimensional_rates_price_{index}": price, f"dimensional_rates_free_{index}": free}
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
            "Row 2: enter the value of “model” this price is for.",
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


def test_a_value_listed_twice_is_refused_naming_both_rows(superuser_client, plan, metric):  # noqa: F811
    entries = (("nle-small", "0.002", ""), ("nle-large", "0.006", ""), (" nle-small", "0.003", ""))

    response = superuser_client.post(PRICE_ADD, per_model_price(plan, metric, **rows("model", *entries)))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "dimensional_rates": ["Rows 1 and 3 both price model=nle-small; keep one row for it."]
    }
    assert not Price.objects.exists()


# Two and three properties (issue #23): model × region typed as rows, per 1K tokens.
MODEL_BY_REGION = (
    (("nle-small", "eu"), "0.002", ""),
    (("nle-small", "us"), "0.0025", ""),
    (("nle-large", "eu"), "0.006", "10,000"),
)


def test_finance_types_rates_per_model_and_region_as_rows(superuser_client, plan, metric):  # noqa: F811
    # per 1K tokens typed, per token stored: 0.002 → 0.000002, 0.0025 → 0.0000025, 0.006 → 0.000006
    data = per_model_price(
        plan, metric, **rows(("model", "region"), *MODEL_BY_REGION, (("", ""), "", ""), unmatched="refuse")
    )

    response = superuser_client.post(PRICE_ADD, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Price.objects.get(plan=plan).dimensional_rates == {
        "dimensions": ["model", "region"],
        "tierScope": "combination",
        "unmatched": "refuse",
        "rates": [
            {"values": {"model": "nle-small", "region": "eu"}, "model": "standard", "unitPrice": "0.000002"},
            {"values": {"model": "nle-small", "region": "us"}, "model": "standard", "unitPrice": "0.0000025"},
            {
                "values": {"model": "nle-large", "region": "eu"},
                "model": "standard",
                "unitPrice": "0.000006",
                "freeUnits": "10000",
            },
        ],
    }


def test_three_properties_are_stored_in_the_order_typed(superuser_client, plan, metric):  # noqa: F811
    entries = ((("nle-small", "eu", "batch"), "0.001", "500"),)

    response = superuser_client.post(
        PRICE_ADD, per_model_price(plan, metric, **rows(("model", "region", "tier"), *entries))
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    stored = Price.objects.get(plan=plan).dimensional_rates
    assert stored["dimensions"] == ["model", "region", "tier"]
    assert stored["rates"] == [
        {
            "values": {"model": "nle-small", "region": "eu", "tier": "batch"},
            "model": "standard",
            "unitPrice": "0.000001",
            "freeUnits": "500",
        }
    ]


def test_a_stored_price_per_model_and_region_shows_as_rows_with_columns_named_by_the_properties(
    superuser_client,
    plan,  # noqa: F811
    metric,  # noqa: F811
):
    superuser_client.post(PRICE_ADD, per_model_price(plan, metric, **rows(("model", "region"), *MODEL_BY_REGION)))
    price = Price.objects.get(plan=plan)

    page = superuser_client.get(reverse("admin:catalog_price_change", args=[quote(price.pk)])).content.decode()

    assert 'name="dimensional_rates_property" id="id_dimensional_rates_property" value="model"' in page
    assert 'name="dimensional_rates_property2" id="id_dimensional_rates_property2" value="region"' in page
    assert 'name="dimensional_rates_property3" id="id_dimensional_rates_property3" value=""' in page
    assert '<th data-value-column="0" data-blank-heading="Value">model</th>' in page
    assert '<th data-value-column="1" data-blank-heading="Value of property 2">region</th>' in page
    assert '<th data-value-column="2" data-blank-heading="Value of property 3">Value of property 3</th>' in page
    # row 3 (index 2): nle-large in eu, $0.006 per 1K, 10,000 free
    assert 'name="dimensional_rates_value_2" id="id_dimensional_rates_value_2" value="nle-large"' in page
    assert 'name="dimensional_rates_value2_2" id="id_dimensional_rates_value2_2" value="eu"' in page
    assert 'name="dimensional_rates_price_2" id="id_dimensional_rates_price_2" value="0.006"' in page
    assert 'name="dimensional_rates_free_2" id="id_dimensional_rates_free_2" value="10000"' in page
    # three blank rows under the three stored, each with a cell per property
    assert 'name="dimensional_rates_value2_5"' in page and 'name="dimensional_rates_value2_6"' not in page
    assert "<details>" in page  # the advanced box stays closed: the rows say it all


@pytest.mark.parametrize(
    ("props", "entries", "message"),
    [
        (
            ("model", "region"),
            ((("nle-small", "eu"), "0.002", ""), (("nle-large", " "), "0.006", "")),
            "Row 2: enter the value of “region” this price is for.",
        ),
        (
            ("model", "region"),
            ((("", "eu"), "0.002", ""),),
            "Row 1: enter the value of “model” this price is for.",
        ),
        (
            ("model", "region"),
            (
                (("nle-small", "eu"), "0.002", ""),
                (("nle-small", "us"), "0.0025", ""),
                (("nle-small", "eu"), "0.003", ""),
            ),
            "Rows 1 and 3 both price model=nle-small, region=eu; keep one row for it.",
        ),
        (
            ("model", "region"),
            ((("nle-small", "eu"), "", "100"),),
            "Row 1: enter the price for model=nle-small, region=eu.",
        ),
        (
            ("model", "model"),
            ((("nle-small", "eu"), "0.002", ""),),
            "The property “model” is named twice; name each property once.",
        ),
        (
            ("model", "", "tier"),
            ((("nle-small", "", "batch"), "0.002", ""), (("nle-large", "eu", "batch"), "0.006", "")),
            "Row 2: the value “eu” is under property 2, which has no name; name the property or clear the value.",
        ),
        (
            ("", "region"),
            ((("nle-small", "eu"), "0.002", ""),),
            "Row 1: the value “nle-small” is under property 1, which has no name; name the property or clear the value.",
        ),
        (
            ("model", "region"),
            (),
            "Add at least one row with a value of “model” and “region” and its price, or clear the properties.",
        ),
        (  # the engine's own checks still run on what the rows build
            ("model", "re gion"),
            ((("nle-small", "eu"), "0.002", ""),),
            "Dimension 're gion' must be an event property key of letters, digits, '_' or '-' (at most 64 characters)",
        ),
    ],
)
def test_an_incomplete_row_of_several_properties_is_refused_naming_the_row_and_property(
    superuser_client,
    plan,  # noqa: F811
    metric,  # noqa: F811
    props,
    entries,
    message,
):
    response = superuser_client.post(PRICE_ADD, per_model_price(plan, metric, **rows(props, *entries)))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"dimensional_rates": [message]}
    assert not Price.objects.exists()


STORED_MODEL_BY_REGION = {
    "dimensions": ["model", "region"],
    "tierScope": "combination",
    "unmatched": "refuse",
    "rates": [
        {"values": {"model": "nle-small", "region": "eu"}, "model": "standard", "unitPrice": "0.000002"},
        {
            "values": {"region": "us", "model": "nle-large"},  # keys in any order: shown in the dimensions' order
            "model": "standard",
            "unitPrice": "0.0000065",
            "freeUnits": "2500",
        },
    ],
}


def test_stored_rates_of_two_properties_read_as_rows_and_build_back_the_same_json():
    typed = rows_of(STORED_MODEL_BY_REGION, 1000)

    assert typed == TypedRates(
        properties=("model", "region"),
        unmatched="refuse",
        rows=(TypedRow(("nle-small", "eu"), "0.002", ""), TypedRow(("nle-large", "us"), "0.0065", "2500")),
    )
    assert rates_per_unit(rows_to_rates(typed), 1000) == STORED_MODEL_BY_REGION


def test_two_property_rows_posted_back_as_shown_are_not_a_change():
    field = PriceAdminForm().fields["dimensional_rates"]
    field.set_rate_per(1000)
    shown = (("nle-small", "eu"), "0.002", ""), (("nle-large", "us"), "0.0065", "2500")
    posted = field.widget.value_from_datadict(
        rows(("model", "region"), *shown, unmatched="refuse"), {}, "dimensional_rates"
    )

    assert not field.has_changed(STORED_MODEL_BY_REGION, posted)
    moved = (("nle-small", "eu"), "0.002", ""), (("nle-large", "eu"), "0.0065", "2500")
    moved_posted = field.widget.value_from_datadict(
        rows(("model", "region"), *moved, unmatched="refuse"), {}, "dimensional_rates"
    )
    assert field.has_changed(STORED_MODEL_BY_REGION, moved_posted)


def test_a_two_property_price_saved_back_from_its_page_unchanged_keeps_its_rates(superuser_client, plan, metric):  # noqa: F811
    typed = rows(("model", "region"), *MODEL_BY_REGION, unmatched="refuse")
    superuser_client.post(PRICE_ADD, per_model_price(plan, metric, **typed))
    price = Price.objects.get(plan=plan)
    stored = price.dimensional_rates
    url = reverse("admin:catalog_price_change", args=[quote(price.pk)])
    page = superuser_client.get(url).content.decode()
    shown = dict(re.findall(r'name="(dimensional_rates_[a-z0-9_]+)" id="[^"]+" value="([^"]*)"', page))
    choices = page[page.index('name="dimensional_rates_unmatched"') :].split("</select>")[0]
    shown["dimensional_rates_unmatched"] = re.search(r'<option value="(\w+)" selected>', choices).group(1)

    response = superuser_client.post(url, {**per_model_price(plan, metric), "dimensional_rates": "", **shown})

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert len(shown) == 1 + 3 + 6 * 5  # unmatched + 3 properties + 6 rows × (3 values, price, free)
    assert shown["dimensional_rates_unmatched"] == "refuse"
    price.refresh_from_db()
    assert price.dimensional_rates == stored


def test_the_advanced_box_wins_over_rows_of_two_properties(superuser_client, plan, metric):  # noqa: F811
    data = per_model_price(plan, metric, **rows(("model", "region"), *MODEL_BY_REGION))

    response = superuser_client.post(PRICE_ADD, {**data, "dimensional_rates": json.dumps(RATES)})

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Price.objects.get(plan=plan).dimensional_rates == RATES


@pytest.mark.parametrize(
    "stored",
    [
        {  # four properties: more than the engine takes, left for the JSON box to say so
            "dimensions": ["a", "b", "c", "d"],
            "rates": [{"values": {"a": "1", "b": "2", "c": "3", "d": "4"}, "model": "standard", "unitPrice": "1"}],
        },
        {**STORED_MODEL_BY_REGION, "tierScope": "metric"},
        {
            **STORED_MODEL_BY_REGION,
            "rates": [
                {
                    "values": {"model": "nle-small", "region": "eu"},
                    "model": "package",
                    "unitPrice": "1",
                    "packageSize": "1000",
                }
            ],
        },
    ],
    ids=["four properties", "tiers across the metric", "package per combination"],
)
def test_rates_rows_cannot_say_are_left_to_the_json_box(stored):
    assert rows_of(stored, 1) is None

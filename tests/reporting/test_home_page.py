"""The admin index is the billing home: charts with their numbers, lists that need action, links to the
filtered lists behind every figure, a bounded number of queries, and the same login and permissions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from costs.models import Cost
from invoicing.models import BillingRunStatus, InvoiceStatus
from tests.factories import BillableMetricFactory, FeePriceFactory, ProductFactory, SubscriptionFactory
from tests.invoicing.factories import record_usage

from .factories import BillingRunFactory, InvoiceFactory, WalletFactory

pytestmark = pytest.mark.django_db

# Session, user, the home page's queries (currencies, revenue, products, metrics + filters, one per charted
# metric (2 here), top customers, the margin section (revenue, costs, one per cost (1 here), customer and
# product names, active subscriptions, their prices), 4 lists), the admin's recent actions (24 for a
# superuser on SQLite, whose permissions need no query): whatever the number of rows.
HOME_QUERIES = 24 if connection.vendor == "sqlite" else 22  # prices: three queries on SQLite, one on PostgreSQL


def _data(customers: int) -> None:
    now = timezone.now()
    product = ProductFactory(name="Analytics")
    metrics = [
        BillableMetricFactory(product=product, merchant=product.merchant, name=name, aggregation="COUNT")
        for name in ("API calls", "Jobs")
    ]
    cost = Cost.objects.create(
        merchant=product.merchant,
        product=product,
        name="Compute",
        currency="USD",
        unit_cost=Decimal("0.01"),
        aggregation="COUNT",
        event_type=metrics[0].event_type,
    )
    last_month = (datetime(now.year, now.month, 1, tzinfo=UTC) - timedelta(days=1)).replace(day=1)
    for index in range(customers):
        subscription = SubscriptionFactory(
            plan__product=product, plan__merchant=product.merchant, customer__name=f"Customer {index:03d}"
        )
        InvoiceFactory(subscription=subscription, issued_at=now - timedelta(days=40 + index % 300))
        FeePriceFactory(plan=subscription.plan)
        InvoiceFactory(subscription=subscription, period_start=last_month, issued_at=last_month + timedelta(days=31))
        record_usage(subscription.customer, cost, last_month + timedelta(days=index % 28), 1)
        InvoiceFactory(subscription=subscription, status=InvoiceStatus.DRAFT, grace_ends_at=now + timedelta(hours=1))
        InvoiceFactory(subscription=subscription, issued_at=now - timedelta(days=400), subtotal=Decimal("1"))
        WalletFactory(customer=subscription.customer)
        BillingRunFactory(status=BillingRunStatus.FAILED)
        for metric in metrics:
            record_usage(subscription.customer, metric, now - timedelta(days=index % 20), 1)


@pytest.mark.parametrize("customers", [2, 25])
def test_home_page_makes_the_same_number_of_queries_whatever_the_data_size(
    customers, client, superuser, django_assert_max_num_queries
):
    _data(customers)
    client.force_login(superuser)

    with django_assert_max_num_queries(HOME_QUERIES):
        response = client.get("/admin/")
    with CaptureQueriesContext(connection) as captured:
        client.get("/admin/")

    assert response.status_code == 200
    assert len(captured.captured_queries) == HOME_QUERIES, "\n".join(q["sql"][:90] for q in captured.captured_queries)


def test_home_page_shows_charts_with_their_numbers_and_links(client, superuser):
    # given
    subscription = SubscriptionFactory(customer__name="Acme", plan__product__name="Analytics")
    issued_at = timezone.now().replace(day=2, hour=12)
    InvoiceFactory(subscription=subscription, issued_at=issued_at, subtotal=Decimal("1234.50"))
    draft = InvoiceFactory(
        subscription=subscription, status=InvoiceStatus.DRAFT, subtotal=Decimal("80.00"), grace_ends_at=timezone.now()
    )
    metric = BillableMetricFactory(
        product=subscription.plan.product, merchant=subscription.merchant, name="API calls", aggregation="COUNT"
    )
    record_usage(subscription.customer, metric, timezone.now(), 1)
    client.force_login(superuser)

    # when
    html = client.get("/admin/").content.decode()

    # then: three charts drawn with the vendored Chart.js, each with its numbers in a <details> table
    assert "/static/reporting/chart.umd.min.js" in html
    for chart in ("revenue-chart", "usage-chart", "top-customers-chart"):
        assert f'<canvas id="{chart}" role="img"' in html
        assert f'<table id="{chart}-table">' in html
    assert html.count("<summary>Numbers behind this chart</summary>") == 3
    assert "$1,234.50" in html
    month_start = timezone.localtime(issued_at).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    assert f"issued_at__gte={month_start.astimezone(UTC).isoformat().replace(':', '%3A').replace('+', '%2B')}" in html
    assert f"customer__id__exact={subscription.customer_id}&amp;status__exact=draft&amp;currency=USD" in html
    assert f"metric={metric.pk}&amp;timestamp__gte=" in html
    # labelled pickers
    assert '<label for="home-currency">Currency</label>' in html
    assert '<label for="home-product">Product (usage chart)</label>' in html
    # lists link to their objects and to the filtered list
    assert f'href="/admin/invoicing/invoice/{draft.pk}/change/"' in html
    assert 'href="/admin/invoicing/invoice/?status__exact=draft"' in html
    assert 'href="/admin/invoicing/invoice/?payment=past_due"' in html
    # the usual app list is still there, below
    assert html.index('id="billing-home"') < html.index('class="app-invoicing module')


def test_every_chart_link_opens_a_list_that_contains_the_figure(client, superuser):
    subscription = SubscriptionFactory()
    issued_at = timezone.now().replace(day=1, hour=0, minute=30)
    invoice = InvoiceFactory(subscription=subscription, issued_at=issued_at, subtotal=Decimal("10"))
    InvoiceFactory(subscription=subscription, issued_at=issued_at - timedelta(days=40), subtotal=Decimal("10"))
    client.force_login(superuser)
    from reporting.home import _revenue_chart

    chart = _revenue_chart(currency="USD", now=timezone.now())
    response = client.get(chart.series[0]["urls"][-1])

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [invoice]


def test_past_due_filter_on_the_invoice_list(client, superuser):
    overdue = InvoiceFactory(issued_at=timezone.now() - timedelta(days=10), subscription__payment_term_days=7)
    InvoiceFactory(issued_at=timezone.now() - timedelta(days=10), subscription__payment_term_days=30)
    client.force_login(superuser)

    response = client.get("/admin/invoicing/invoice/?payment=past_due")

    assert list(response.context["cl"].result_list) == [overdue]


def test_product_and_currency_are_picked_with_get_parameters(client, superuser):
    InvoiceFactory(currency="EUR", issued_at=timezone.now(), subtotal=Decimal("7"))
    InvoiceFactory(currency="USD", issued_at=timezone.now(), subtotal=Decimal("9"))
    first, second = ProductFactory(name="A product"), ProductFactory(name="B product")
    BillableMetricFactory(product=second, merchant=second.merchant, name="Seconds metric", aggregation="COUNT")
    client.force_login(superuser)

    default = client.get("/admin/").content.decode()
    picked = client.get(f"/admin/?currency=USD&product={second.pk}").content.decode()

    assert "Invoiced revenue per month (EUR, net of tax and credit notes)" in default
    assert "This product has no metrics." in default and first.pk in default
    assert "Invoiced revenue per month (USD, net of tax and credit notes)" in picked
    assert "Seconds metric (Count of events" in picked


def test_billing_viewer_sees_the_home_page(client, billing_viewer):
    InvoiceFactory(status=InvoiceStatus.DRAFT)
    client.force_login(billing_viewer)

    html = client.get("/admin/").content.decode()

    assert 'id="revenue-chart-figure"' in html
    assert 'id="drafts-in-grace"' in html
    assert 'id="failed-runs"' in html


def test_staff_without_billing_roles_sees_no_figures(client, staff_without_roles):
    InvoiceFactory(status=InvoiceStatus.DRAFT)
    client.force_login(staff_without_roles)

    html = client.get("/admin/").content.decode()

    assert 'id="billing-home"' in html
    assert "<canvas" not in html
    assert 'id="drafts-in-grace"' not in html


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    response = client.get("/admin/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_lists_show_failed_runs_past_due_invoices_and_low_balances(client, superuser):
    run = BillingRunFactory(status=BillingRunStatus.FAILED, invoices_failed=3)
    overdue = InvoiceFactory(
        issued_at=datetime(2026, 1, 1, tzinfo=UTC), subscription__payment_term_days=14, amount_due=Decimal("42")
    )
    wallet = WalletFactory(customer__name="Low Co", balance=Decimal("5"), low_balance_threshold=Decimal("20"))
    client.force_login(superuser)

    html = client.get("/admin/").content.decode()

    assert f'href="/admin/invoicing/billingrun/{run.pk}/change/"' in html
    assert f'href="/admin/invoicing/invoice/{overdue.pk}/change/"' in html
    assert "2026-01-15" in html and "$42.00" in html
    assert f'href="/admin/wallets/wallet/{wallet.pk}/change/"' in html
    assert "Low Co" in html and "$5.00" in html and "$20.00" in html


def test_home_page_shows_last_months_revenue_cost_and_margin_per_customer_and_product(
    client, superuser, billing_viewer
):
    # given: last month Acme ran 1,000 GPU-seconds at $0.0005 ($0.50) and was invoiced $2.00 for it
    now = timezone.now()
    last_month = (datetime(now.year, now.month, 1, tzinfo=UTC) - timedelta(days=1)).replace(day=1)
    subscription = SubscriptionFactory(customer__name="Acme", plan__product__name="GPU cloud")
    cost = Cost.objects.create(
        merchant=subscription.merchant,
        product=subscription.plan.product,
        name="GPU time",
        currency="USD",
        unit_cost=Decimal("0.0005"),
        aggregation="SUM",
        event_type="gpu.job",
        value_property="$.seconds",
    )
    record_usage(subscription.customer, cost, last_month + timedelta(days=3), 1000)
    record_usage(subscription.customer, cost, datetime(now.year, now.month, 1, tzinfo=UTC), 5000)  # this month
    InvoiceFactory(
        subscription=subscription, period_start=last_month, issued_at=now - timedelta(hours=1), subtotal=Decimal("2.00")
    )

    for user in (superuser, billing_viewer):
        client.force_login(user)

        # when
        html = client.get("/admin/").content.decode()

        # then: $2.00 − $0.50 = $1.50, 75 %, in both tables, each row linking to its object
        assert f"Revenue, cost and margin — {last_month:%B %Y} (USD)" in html
        assert "MRR $0.00 · ARR $0.00 (1 active subscriptions" in html
        for table, url in (
            ("margin-customers", f"/admin/catalog/customer/{subscription.customer_id}/change/"),
            ("margin-products", f"/admin/catalog/product/{subscription.plan.product_id}/change/"),
        ):
            section = html[html.index(f'id="{table}"') :]
            section = section[: section.index("</table>")]
            assert f'<a href="{url}">' in section
            assert [cell in section for cell in ("$2.00", "$0.50", "$1.50", "75.00 %")] == [True] * 4


def test_staff_without_the_cost_permission_sees_no_margin(client, staff_without_roles):
    client.force_login(staff_without_roles)

    assert 'id="margin"' not in client.get("/admin/").content.decode()

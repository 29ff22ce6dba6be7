"""Admin: a read-only events list that stays fast on 100M rows, and usage on the customer page.

The customer page belongs to catalog, which cannot import metering; so this module offers
``CustomerUsageAdminMixin``, a read-only "usage this month" panel, and registers nothing for Customer:
``billing_site.admin`` composes the customer admin from catalog's class and each app's mixin.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from catalog.admin_scoping import MerchantScopedAdminMixin, request_merchant_ids, scope_queryset
from catalog.models import BillableMetric, Customer
from core.formatting import decimal_string

from .models import UsageEvent
from .selectors import usage_aggregate

COUNT_CAP = 10_000


class EstimatedCountPaginator(Paginator):
    """Never counts 100M rows: the planner's estimate when unfiltered (PostgreSQL), else a count capped at 10,001."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if connection.vendor == "postgresql" and not queryset.query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [queryset.model._meta.db_table]
                )
                row = cursor.fetchone()
            if row and row[0] > COUNT_CAP:
                return int(row[0])
        return queryset[: COUNT_CAP + 1].count()


class MetricListFilter(admin.SimpleListFilter):
    title = "billable metric"
    parameter_name = "metric"

    def lookups(self, request, model_admin):
        metrics = scope_queryset(BillableMetric.objects.all(), request_merchant_ids(request), "merchant")
        return [
            (pk, f"{name} ({event_type})") for pk, name, event_type in metrics.values_list("id", "name", "event_type")
        ]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        metric = BillableMetric.objects.filter(pk=self.value()).first()
        if metric is None:
            return queryset.none()
        return queryset.filter(merchant_id=metric.merchant_id, event_type=metric.event_type)


class CustomerListFilter(admin.SimpleListFilter):
    """Filter by customer id (``?customer=cus_…``), reached from the customer page; no list of all customers."""

    title = "customer"
    parameter_name = "customer"

    def lookups(self, request, model_admin):
        value = request.GET.get(self.parameter_name)
        if not value:
            return []
        customers = scope_queryset(Customer.objects.all(), request_merchant_ids(request), "merchant")
        customer = customers.filter(pk=value).first()
        return [(value, str(customer) if customer else value)]

    def has_output(self) -> bool:
        return bool(self.value())

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        return queryset.filter(customer_id=self.value())


@admin.register(UsageEvent)
class UsageEventAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    merchant_path = "merchant"
    list_display = ("public_id", "timestamp", "event_type", "customer", "external_subject", "idempotency_key")
    list_filter = (MetricListFilter, CustomerListFilter, ("timestamp", admin.DateFieldListFilter))
    list_select_related = ("customer",)
    ordering = ("-id",)  # the primary key index, backwards: no sort of the table
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 50
    readonly_fields = [field.name for field in UsageEvent._meta.fields]

    @admin.display(description="ID", ordering="id")
    def public_id(self, obj: UsageEvent) -> str:
        return obj.public_id

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def _month_bounds(now: datetime) -> tuple[datetime, datetime]:
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


class CustomerUsageAdminMixin:
    """This month's usage per metric (calendar month, UTC) on the customer page: mixed into catalog's
    ``CustomerAdmin`` by ``billing_site.admin``, which adds ``panels`` to the composed class's."""

    panels = (("Usage this month", ("usage_this_month",)),)

    @admin.display(description="Usage this month")
    def usage_this_month(self, obj: Customer):
        start, end = _month_bounds(timezone.now())
        metrics = BillableMetric.objects.filter(merchant_id=obj.merchant_id).prefetch_related("filters")
        events_url = reverse("admin:metering_usageevent_changelist")
        rows = [
            (
                metric.name,
                f"{decimal_string(usage_aggregate(metric=metric, customer=obj, start=start, end=end))}",
                metric.unit,
                f"{events_url}?customer={obj.pk}&metric={metric.pk}",
            )
            for metric in metrics
        ]
        if not rows:
            return "No billable metrics yet."
        body = format_html_join(
            "",
            '<tr><td>{}</td><td style="text-align:right">{}</td><td>{}</td><td><a href="{}">events</a></td></tr>',
            rows,
        )
        return format_html(
            '<table><thead><tr><th colspan="4">{} – {} (UTC)</th></tr></thead><tbody>{}</tbody></table>',
            f"{start:%Y-%m-%d}",
            f"{end:%Y-%m-%d}",
            body,
        )

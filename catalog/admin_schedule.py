"""The billing schedule (django-celery-beat's periodic tasks and schedules) with permissions that hold.

django-celery-beat's own ``PeriodicTaskAdmin`` declares its enable / disable / toggle / run actions
without ``permissions``, so Django offers them to anyone who may view the list: a "Billing viewer"
could disable the task that closes billing periods and silently stop all billing. Here every action
needs change permission on periodic tasks.

The schedule also serves every merchant at once, so staff limited to some merchants (``admin_scoping``)
may read it but not change it, whatever their role.

This module registers nothing: ``billing_site.admin`` registers ``SCHEDULE_ADMINS`` in place of
django-celery-beat's admins.
"""

from __future__ import annotations

from django.contrib import admin
from django_celery_beat.admin import (
    ClockedScheduleAdmin,
    CrontabScheduleAdmin,
    IntervalScheduleAdmin,
    PeriodicTaskAdmin,
    SolarScheduleAdmin,
)
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from .admin_numbers import NormalizedNumbersAdminMixin
from .admin_scoping import request_merchant_ids


class PlatformWideAdminMixin(NormalizedNumbersAdminMixin):
    """Rows shared by every merchant: only staff not limited to merchants may add, change or delete them.

    Numbers (a solar schedule's latitude and longitude) are shown normalized, as on every billing page.
    """

    def has_add_permission(self, request) -> bool:
        return request_merchant_ids(request) is None and super().has_add_permission(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return request_merchant_ids(request) is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return request_merchant_ids(request) is None and super().has_delete_permission(request, obj)


class BillingSchedulePeriodicTaskAdmin(PlatformWideAdminMixin, PeriodicTaskAdmin):
    @admin.action(description="Enable selected tasks", permissions=["change"])
    def enable_tasks(self, request, queryset):
        return super().enable_tasks(request, queryset)

    @admin.action(description="Disable selected tasks", permissions=["change"])
    def disable_tasks(self, request, queryset):
        return super().disable_tasks(request, queryset)

    @admin.action(description="Toggle activity of selected tasks", permissions=["change"])
    def toggle_tasks(self, request, queryset):
        return super().toggle_tasks(request, queryset)

    @admin.action(description="Run selected tasks", permissions=["change"])
    def run_tasks(self, request, queryset):
        return super().run_tasks(request, queryset)


class PlatformWideClockedScheduleAdmin(PlatformWideAdminMixin, ClockedScheduleAdmin):
    pass


class PlatformWideCrontabScheduleAdmin(PlatformWideAdminMixin, CrontabScheduleAdmin):
    pass


class PlatformWideIntervalScheduleAdmin(PlatformWideAdminMixin, IntervalScheduleAdmin):
    pass


class PlatformWideSolarScheduleAdmin(PlatformWideAdminMixin, SolarScheduleAdmin):
    pass


# What ``billing_site.admin`` registers in place of django-celery-beat's own admins.
SCHEDULE_ADMINS = {
    PeriodicTask: BillingSchedulePeriodicTaskAdmin,
    ClockedSchedule: PlatformWideClockedScheduleAdmin,
    CrontabSchedule: PlatformWideCrontabScheduleAdmin,
    IntervalSchedule: PlatformWideIntervalScheduleAdmin,
    SolarSchedule: PlatformWideSolarScheduleAdmin,
}

"""The billing schedule (django-celery-beat's periodic tasks) with actions that need a real permission.

django-celery-beat's own ``PeriodicTaskAdmin`` declares its enable / disable / toggle / run actions
without ``permissions``, so Django offers them to anyone who may view the list: a "Billing viewer"
could disable the task that closes billing periods and silently stop all billing. This subclass keeps
its pages and behaviour and requires change permission on periodic tasks for every action.
"""

from __future__ import annotations

from django.contrib import admin
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask


class BillingSchedulePeriodicTaskAdmin(PeriodicTaskAdmin):
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


if admin.site.is_registered(PeriodicTask):
    admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, BillingSchedulePeriodicTaskAdmin)

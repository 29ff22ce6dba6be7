"""Fill ``Subscription.plan_changed_at`` from the plan changes already applied (the latest one's
``effective_at``): real-time debiting reads it to start the current plan's usage window at an upgrade."""

from django.db import migrations
from django.db.models import Max


def backfill(apps, schema_editor):
    Subscription = apps.get_model("catalog", "Subscription")
    SubscriptionPlanChange = apps.get_model("invoicing", "SubscriptionPlanChange")
    latest = (
        SubscriptionPlanChange.objects.filter(applied_at__isnull=False)
        .values("subscription_id")
        .annotate(last=Max("effective_at"))
        .values_list("subscription_id", "last")
    )
    for subscription_id, last in latest.iterator():
        Subscription.objects.filter(pk=subscription_id).update(plan_changed_at=last)


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0005_subscription_plan_changed_at"),
        ("invoicing", "0003_realtime_usage_counter"),
    ]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]

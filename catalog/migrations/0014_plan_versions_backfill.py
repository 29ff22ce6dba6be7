"""Every plan's current prices become its version 1, its default since the plan was created; pinned
subscriptions are pinned to it, floating ones follow the default (version 1 until a new one is minted)."""

from django.db import migrations
from django.utils.text import slugify


def _key(price, used):
    key = price.plan_line_key or (slugify(price.invoice_display_name).replace("-", "_") or "line")[:56]
    if not key[0].isalnum():
        key = "line_" + key
    base, n = key, 2
    while key in used:
        key, n = f"{base}_{n}", n + 1
    used.add(key)
    return key


def forwards(apps, schema_editor):
    Plan = apps.get_model("catalog", "Plan")
    Price = apps.get_model("catalog", "Price")
    PlanVersion = apps.get_model("catalog", "PlanVersion")
    PlanVersionPrice = apps.get_model("catalog", "PlanVersionPrice")
    PlanDefaultChange = apps.get_model("catalog", "PlanDefaultChange")
    Subscription = apps.get_model("catalog", "Subscription")
    for plan in Plan.objects.order_by("pk").iterator():
        version = PlanVersion.objects.create(
            id="pv_" + plan.pk.split("_", 1)[-1][:36],
            plan=plan,
            number=1,
            status="published",
            created_by="migration",
            created_at=plan.created_at,
            published_at=plan.created_at,
            updated_at=plan.created_at,
        )
        used = set()
        for price in Price.objects.filter(plan=plan, customer__isnull=True).order_by("plan_line_key", "created_at", "pk"):
            key = _key(price, used)
            if price.plan_line_key != key:
                Price.objects.filter(pk=price.pk).update(plan_line_key=key)
            PlanVersionPrice.objects.create(version=version, price=price, key=key)
        PlanDefaultChange.objects.create(plan=plan, version=version, effective_at=plan.created_at)
        Plan.objects.filter(pk=plan.pk).update(default_version=version, default_version_since=plan.created_at)
        Subscription.objects.filter(plan=plan, version_policy="pinned").update(plan_version=version)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0013_plan_versions")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


def _forget_routes(sender, instance, **kwargs):
    from django.db import transaction

    from .selectors import metric_routes_forget

    merchant_id = instance.merchant_id
    metric_routes_forget(merchant_id=merchant_id)
    # Again once committed: a read between the save and the commit may have cached the uncommitted state.
    transaction.on_commit(lambda: metric_routes_forget(merchant_id=merchant_id))


class MeteringConfig(AppConfig):
    name = "metering"
    verbose_name = "Metering"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Cache invalidation only (no business logic): ingestion caches each merchant's event-type →
        # metric routing per process; any save or delete of a metric in this process drops it.
        from catalog.models import BillableMetric, Price

        post_save.connect(_forget_routes, sender=BillableMetric, dispatch_uid="metering-routes-save")
        post_delete.connect(_forget_routes, sender=BillableMetric, dispatch_uid="metering-routes-delete")
        # A price refusing values it does not name is part of the routing (MetricRoute.refusals).
        post_save.connect(_forget_routes, sender=Price, dispatch_uid="metering-routes-price-save")
        post_delete.connect(_forget_routes, sender=Price, dispatch_uid="metering-routes-price-delete")

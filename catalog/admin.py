from django.contrib import admin

from . import models

for model in (
    models.Merchant,
    models.Product,
    models.BillableMetric,
    models.Fee,
    models.Plan,
    models.Price,
    models.Customer,
    models.Subscription,
    models.TestClock,
):
    admin.site.register(model)

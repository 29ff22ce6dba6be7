from django.apps import AppConfig


class BillingSiteConfig(AppConfig):
    """The project itself as the last installed app, for one reason: Django's admin autodiscovery imports
    ``billing_site.admin`` (after every app's ``admin``), which composes the pages that span apps. No models."""

    name = "billing_site"
    verbose_name = "Meterline"

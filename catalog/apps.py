from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Catalog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from simple_history.signals import pre_create_historical_record

        from .history import history_api_key_attach
        from .roles import billing_roles_sync_after_migrate

        # Infrastructure, not business logic: permissions only exist after migrate, and models that
        # later migrations add must reach the staff roles without anyone remembering a command.
        post_migrate.connect(billing_roles_sync_after_migrate, sender=self, dispatch_uid="catalog_billing_roles")
        # Change history names the API key behind an API change (catalog/history.py); every billing
        # app's historical models share the column, so one receiver serves them all.
        pre_create_historical_record.connect(history_api_key_attach, dispatch_uid="catalog_history_api_key")

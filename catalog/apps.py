from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Catalog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .roles import billing_roles_sync_after_migrate

        # Infrastructure, not business logic: permissions only exist after migrate, and models that
        # later migrations add must reach the staff roles without anyone remembering a command.
        post_migrate.connect(billing_roles_sync_after_migrate, sender=self, dispatch_uid="catalog_billing_roles")

from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Catalog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .db import timestamptz_loader_install
        from .roles import billing_roles_sync_after_migrate

        connection_created.connect(timestamptz_loader_install, dispatch_uid="catalog_timestamptz_loader")

        # Infrastructure, not business logic: permissions only exist after migrate, and models that
        # later migrations add must reach the staff roles without anyone remembering a command.
        post_migrate.connect(billing_roles_sync_after_migrate, sender=self, dispatch_uid="catalog_billing_roles")

from django.apps import AppConfig
from django.db.backends.signals import connection_created


class CoreConfig(AppConfig):
    """Infrastructure shared by every app (database plumbing, ids, durations, formatting, caches, the API
    toolkit). No models; it imports no domain app."""

    name = "core"
    verbose_name = "Core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .api import schema  # noqa: F401  (registers the OpenAPI extensions)
        from .db import timestamptz_loader_install

        connection_created.connect(timestamptz_loader_install, dispatch_uid="core_timestamptz_loader")

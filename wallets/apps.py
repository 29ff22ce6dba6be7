from django.apps import AppConfig


class WalletsConfig(AppConfig):
    name = "wallets"
    verbose_name = "Prepaid credit"
    default_auto_field = "django.db.models.BigAutoField"

from django.apps import AppConfig, apps


class InvoicingConfig(AppConfig):
    name = "invoicing"
    verbose_name = "Invoicing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        if apps.is_installed("anymail"):
            # django-anymail reports a provider's tracking events (bounces…) only as this signal; the receiver
            # hands each one to the delivery service, nothing else (invoicing/README.md, "Delivery").
            from anymail.signals import tracking

            tracking.connect(anymail_tracking_received, dispatch_uid="invoicing.delivery.anymail_tracking")


def anymail_tracking_received(sender, event, esp_name, **kwargs) -> None:
    from django.utils import timezone

    from .services import document_delivery_provider_event

    document_delivery_provider_event(
        message_id=event.message_id or "",
        event_type=event.event_type,
        description=event.description or event.mta_response or event.reject_reason or "",
        now=event.timestamp or timezone.now(),
    )

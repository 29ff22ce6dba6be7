from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Invoicing's pages link to our pay page through its extension point (it may not import us).
        from invoicing.pay_links import invoice_pay_link_register

        from .checkout import invoice_pay_link

        invoice_pay_link_register(invoice_pay_link)

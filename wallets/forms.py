"""Admin forms for adding credit from the customer page."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django import forms

from catalog.pricing import is_known_currency


class CreditForm(forms.Form):
    amount = forms.DecimalField(max_digits=30, decimal_places=12, min_value=Decimal("0.000000000001"))
    currency = forms.CharField(max_length=3, help_text="ISO 4217, e.g. USD.")
    expires_at = forms.DateTimeField(required=False, help_text="Optional: unused credit expires at this time (UTC).")
    description = forms.CharField(max_length=255, required=False)
    # Generated when the form is shown, so a double-submitted form adds the credit once.
    idempotency_key = forms.CharField(widget=forms.HiddenInput, initial=lambda: f"admin-{uuid.uuid4()}")

    def clean_currency(self) -> str:
        currency = self.cleaned_data["currency"].upper()
        if not is_known_currency(currency):
            raise forms.ValidationError(f"“{currency}” is not an ISO 4217 currency code.")
        return currency


class TopUpForm(CreditForm):
    purchase_invoice_ref = forms.CharField(
        label="Purchase invoice", max_length=100, required=False, help_text="The invoice that bills this credit."
    )

"""Admin forms for adding credit from the customer page."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django import forms
from django.utils import timezone

from catalog.pricing import is_known_currency
from catalog.pricing.limits import DECIMAL_PLACES, MAX_DIGITS, QUANTUM


class CreditForm(forms.Form):
    amount = forms.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, min_value=QUANTUM)
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


MAX_CREDITS = Decimal("1e18")  # the credit columns hold 18 integer digits


class GrantForm(forms.Form):
    """Add credits to a metered entitlement (``entitlement_grant_create``), in words finance reads."""

    amount = forms.DecimalField(
        label="Credits",
        max_digits=MAX_DIGITS,
        decimal_places=DECIMAL_PLACES,
        help_text="In the feature's units, e.g. 5000 tokens.",
    )
    effective_at = forms.DateTimeField(label="Effective from", required=False, help_text="Optional. Empty: from now.")
    expires_at = forms.DateTimeField(
        label="Expires at", required=False, help_text="Optional. Empty: the credits never expire."
    )
    priority = forms.IntegerField(
        initial=0,
        min_value=-(2**31 - 1),
        max_value=2**31 - 1,
        help_text="Lower numbers are used up first; may be negative. The per-period allowance goes first.",
    )
    reset_max_rollover = forms.DecimalField(
        label="Most kept at a reset",
        required=False,
        max_digits=MAX_DIGITS,
        decimal_places=DECIMAL_PLACES,
        help_text="Optional. Unused credits kept when the usage period resets. Empty: all of them; 0: none.",
    )
    reset_min_rollover = forms.DecimalField(
        label="Least kept at a reset",
        required=False,
        max_digits=MAX_DIGITS,
        decimal_places=DECIMAL_PLACES,
        help_text="Optional. The balance is topped up to this at each reset. Empty: no top-up.",
    )
    # Generated when the form is shown, so a double-submitted form adds the grant once.
    idempotency_key = forms.CharField(widget=forms.HiddenInput, initial=lambda: f"admin-{uuid.uuid4()}")

    def __init__(self, *args, now, **kwargs):
        super().__init__(*args, **kwargs)
        self.now = now

    def clean_amount(self) -> Decimal:
        amount = self.cleaned_data["amount"]
        if amount <= 0:
            raise forms.ValidationError("Give a positive number of credits (more than 0).")
        if amount >= MAX_CREDITS:
            raise forms.ValidationError("Give fewer than 10^18 credits.")
        return amount

    def _not_negative(self, name: str) -> Decimal | None:
        value = self.cleaned_data.get(name)
        if value is not None and value < 0:
            raise forms.ValidationError("Give 0 or more credits, or leave it empty.")
        if value is not None and value >= MAX_CREDITS:
            raise forms.ValidationError("Give fewer than 10^18 credits.")
        return value

    def clean_reset_max_rollover(self) -> Decimal | None:
        return self._not_negative("reset_max_rollover")

    def clean_reset_min_rollover(self) -> Decimal | None:
        return self._not_negative("reset_min_rollover")

    def clean(self):
        data = super().clean()
        effective_at = data.get("effective_at") or self.now
        expires_at = data.get("expires_at")
        if expires_at is not None and expires_at <= effective_at:
            self.add_error(
                "expires_at",
                f"The expiry must be after the credits take effect ({timezone.localtime(effective_at):%Y-%m-%d %H:%M}).",
            )
        low, high = data.get("reset_min_rollover"), data.get("reset_max_rollover")
        if low is not None and high is not None and low > high:
            self.add_error("reset_min_rollover", "The least kept at a reset cannot be more than the most kept.")
        return data

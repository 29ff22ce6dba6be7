"""Forms and inline formsets of the catalog admin.

The rules themselves live in ``catalog.validation`` (shared with the models and the API); these
classes only collect what the finance person typed and put each message next to the right field.
"""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.forms.models import BaseInlineFormSet

from . import services
from .admin_dimensional import DimensionalRatesField, rates_per_unit
from .admin_rates import RateScaleFormMixin, RateScaleFormSetMixin
from .models import ApiKey, Plan, Price, RatePer
from .validation import rate_schedule_errors, tier_table_errors


class FieldErrorsOnPageMixin:
    """Show a model-level message even when its field is not on this form.

    ``Model.clean()`` names fields (``overrides``, ``is_obligation``…) that a given admin form may
    leave out; Django would raise ``ValueError`` for those. Such messages become form-wide errors
    that name the field, so the finance person still sees why the save was refused.
    """

    def add_error(self, field, error):
        if field is None and isinstance(error, ValidationError) and hasattr(error, "error_dict"):
            on_form: dict[str, list] = {}
            elsewhere: list[str] = []
            for name, error_list in error.error_dict.items():
                if name == NON_FIELD_ERRORS or name in self.fields:
                    on_form[name] = error_list
                else:
                    label = self._meta.model._meta.get_field(name).verbose_name
                    elsewhere.extend(f"{str(label).capitalize()}: {message}" for e in error_list for message in e)
            if elsewhere:
                on_form.setdefault(NON_FIELD_ERRORS, []).extend(ValidationError(m) for m in elsewhere)
            error = ValidationError(on_form)
        super().add_error(field, error)


class CatalogModelForm(FieldErrorsOnPageMixin, forms.ModelForm):
    """Base form of every catalog admin page."""


def _subscriptions(count: int) -> str:
    return "1 live subscription" if count == 1 else f"{count} live subscriptions"


def _labels(model, fields) -> str:
    names = []
    for field in fields:
        if field == "tiers":
            names.append("tiers")
        elif field == "rates":
            names.append("rate schedule")
        elif field == "prices":
            names.append("prices")
        else:
            names.append(str(model._meta.get_field(field).verbose_name))
    return ", ".join(names)


def price_in_use_message(price: Price, conflict: services.CatalogConflict, changed) -> str:
    """A finance person's words for ``price_update``'s PRICE_IN_USE refusal."""
    what = _labels(Price, [f for f in changed if f not in services.PRICE_DISPLAY_FIELDS])
    return (
        f"This price is billed by {_subscriptions(conflict.details['subscriptionCount'])} "
        f"({f'plan “{price.plan.name}”' if price.plan_id else 'an earlier version of its plan'}). Changing its "
        f"{what} would re-price periods already running; "
        "tick “Save as a new plan version” to put the changed price in a new version of the plan instead "
        "(floating subscriptions move to it at their next period, pinned ones stay). Only the invoice display "
        "name, display group and rate type can change in place."
    )


def plan_in_use_message(plan: Plan, conflict: services.CatalogConflict, doing: str) -> str:
    """A finance person's words for ``plan_update``'s PLAN_IN_USE refusal."""
    return (
        f"The plan “{plan.name}” is billed by {_subscriptions(conflict.details['subscriptionCount'])}. "
        f"{doing} would change what periods already running charge; create a new plan instead."
    )


class PriceAdminForm(RateScaleFormMixin, CatalogModelForm):
    """The price page. Saves go through ``price_create`` / ``price_update`` (``PriceAdmin``); the refusals
    of those services (a price live subscriptions bill, a plan they bill) are asked here first so they
    show on the form."""

    save_as_new_version = forms.BooleanField(
        required=False,
        label="Save as a new plan version",
        help_text="For a price live subscriptions bill: the changed price goes into a new version of the plan, "
        "which becomes its default. This price stays as it is for the periods already running.",
    )
    dimensional_rates = DimensionalRatesField(
        label="Rates per event property",
        help_text="Leave empty for one rate for every event.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The stored price (None on the add page): the conflict rules compare against it.
        self.original = Price.objects.select_related("plan").filter(pk=self.instance.pk).first()
        # The rows' prices are typed and shown in the price's "price per" scale, like its other rates.
        if "dimensional_rates" in self.fields:
            self.fields["dimensional_rates"].set_rate_per(self._typed_rate_per())

    def _typed_rate_per(self) -> int:
        typed = self.data.get(self.add_prefix("rate_per")) if self.is_bound else None
        try:
            return int(typed or self.initial.get("rate_per") or RatePer.UNIT)
        except (TypeError, ValueError):
            return RatePer.UNIT

    def clean_dimensional_rates(self):
        rate_per = int(self.cleaned_data.get("rate_per") or self.instance.rate_per or RatePer.UNIT)
        return rates_per_unit(self.cleaned_data.get("dimensional_rates"), rate_per)

    def clean(self):
        cleaned = super().clean()
        plan, customer = cleaned.get("plan"), cleaned.get("customer")
        if self.original is None:
            if plan is not None and customer is None:
                conflict = services.plan_update_conflict(plan=plan, changed=["prices"])
                if conflict is not None:
                    raise ValidationError(plan_in_use_message(plan, conflict, "Adding a price to it"))
            return cleaned
        # What the price's stored values would become (rates typed "per 1K" are compared per unit).
        changed = [
            name
            for name in self.changed_data
            if name in cleaned and cleaned[name] != getattr(self.original, name, None)
        ]
        candidate = Price(pk=self.original.pk, plan=plan, customer=customer)
        conflict = services.price_update_conflict(price=candidate, changed=changed)
        if conflict is not None and not cleaned.get("save_as_new_version"):
            raise ValidationError(price_in_use_message(candidate, conflict, changed))
        old_plan = self.original.plan
        if "plan" in changed and old_plan is not None and self.original.customer_id is None:
            conflict = services.plan_update_conflict(plan=old_plan, changed=["prices"])
            if conflict is not None:
                raise ValidationError(plan_in_use_message(old_plan, conflict, "Taking this price off it"))
        return cleaned

    class Meta:
        model = Price
        fields = (
            "merchant",
            "plan",
            "plan_line_key",
            "billable_metric",
            "fee",
            "customer",
            "overrides",
            "invoice_display_name",
            "invoice_display_group",
            "payment_term",
            "model",
            "rate_per",
            "billing_cadence",
            "quantity",
            "unit_price",
            "package_size",
            "package_rounding",
            "percentage_rate",
            "fixed_fee_per_event",
            "min_charge_per_event",
            "max_charge_per_event",
            "min_charge_per_period",
            "max_charge_per_period",
            "dynamic_mode",
            "event_price_property",
            "min_unit_price",
            "max_unit_price",
            "free_units",
            "usage_discount_units",
            "discount_percent",
            "minimum_commitment",
            "allows_rebate",
            "is_obligation",
            "grant_discount_enabled",
            "rate_type",
            "tax_supply_scope",
            "pricing_unit_id",
            "dimensional_rates",
        )
        widgets = {
            "invoice_display_name": forms.TextInput(attrs={"size": 50}),
        }


class PlanAdminForm(CatalogModelForm):
    """The plan page: refuses what ``plan_update`` refuses (its cadence or anchor while subscriptions bill it)."""

    def clean(self):
        cleaned = super().clean()
        stored = Plan.objects.filter(pk=self.instance.pk).first()
        if stored is None:
            return cleaned
        changed = [name for name in self.changed_data if name in cleaned]
        conflict = services.plan_update_conflict(plan=stored, changed=changed)
        if conflict is not None:
            billing = [name for name in changed if name in services.PLAN_BILLING_FIELDS]
            doing = f"Changing its {_labels(Plan, billing)}"
            raise ValidationError(plan_in_use_message(stored, conflict, doing))
        return cleaned


class ApiKeyAddForm(CatalogModelForm):
    """Adding a key asks only who it is for; the secret is generated by ``api_key_create``."""

    class Meta:
        model = ApiKey
        fields = ["merchant", "name"]


class ApiKeyChangeForm(CatalogModelForm):
    class Meta:
        model = ApiKey
        fields = ["name"]


class ParentMerchantInlineFormSet(BaseInlineFormSet):
    """New rows take the merchant of the page's object, which is not a column of the inline."""

    def _construct_form(self, i, **kwargs):
        form = super()._construct_form(i, **kwargs)
        if self.instance is not None and getattr(self.instance, "merchant_id", None):
            form.instance.merchant_id = self.instance.merchant_id
        return form


class FixedFieldsInlineFormSet(ParentMerchantInlineFormSet):
    """Inline rows whose stored rows may change only the fields their update service changes.

    ``updatable`` is the service's set (``BILLABLE_METRIC_UPDATE_FIELDS``…): the API ignores other fields
    once the row exists (a metric's aggregation: usage was already counted that way), so the admin
    refuses them on the row instead of changing them behind the service's back.
    """

    updatable: frozenset[str] = frozenset()

    def clean(self) -> None:
        super().clean()
        for form in self.initial_forms:
            for name in form.changed_data:
                if name in form.fields and name not in self.updatable and name != "DELETE":
                    label = str(self.model._meta.get_field(name).verbose_name)
                    form.add_error(name, f"The {label} is fixed once created; create a new one instead.")


class BillableMetricInlineFormSet(FixedFieldsInlineFormSet):
    updatable = frozenset(services.BILLABLE_METRIC_UPDATE_FIELDS)


class FeeInlineFormSet(FixedFieldsInlineFormSet):
    updatable = frozenset(services.FEE_UPDATE_FIELDS)


def _kept_rows(formset: BaseInlineFormSet) -> list[dict]:
    """cleaned_data of the rows that stay after the save, in the order they were entered."""
    rows = []
    for form in formset.forms:
        if not hasattr(form, "cleaned_data") or not form.cleaned_data:
            continue
        if formset.can_delete and formset._should_delete_form(form):
            continue
        rows.append(form.cleaned_data)
    return rows


def _schedule_in_use(formset: BaseInlineFormSet, what: str) -> None:
    """Refuse a changed tier table or rate schedule of a price live subscriptions bill (``price_update``'s rule).

    ``formset.instance`` carries the price form's new values (the form is cleaned before its inlines).
    """
    price = formset.instance
    if not formset.has_changed() or not Price.objects.filter(pk=price.pk).exists():
        return
    if formset.data.get("save_as_new_version") in ("on", "true", "1", "True"):
        return  # the changed schedule goes into a new plan version (``price_save_as_new_version``)
    conflict = services.price_update_conflict(price=price, changed=[what])
    if conflict is not None:
        raise ValidationError(price_in_use_message(price, conflict, [what]))


class PriceTierInlineFormSet(RateScaleFormSetMixin, BaseInlineFormSet):
    """The tier table of a graduated or volume price, checked as a whole."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return  # a row already has its own message (e.g. a negative price)
        _schedule_in_use(self, "tiers")
        rows = [(row.get("up_to"), row.get("unit_price")) for row in _kept_rows(self)]
        messages = tier_table_errors(rows, model=self.instance.model)
        if messages:
            raise ValidationError([_sentence(m) for m in messages])

    def tier_rows(self) -> list[services.TierRow]:
        """The rows that stay, in entry order, for ``price_create`` / ``price_update``."""
        return [
            services.TierRow(row.get("up_to"), row.get("unit_price"), row.get("flat_fee") or Decimal(0))
            for row in _kept_rows(self)
        ]


class DynamicRateInlineFormSet(RateScaleFormSetMixin, BaseInlineFormSet):
    """The rate schedule of a dynamic price."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        _schedule_in_use(self, "rates")
        starts = [row.get("effective_from") for row in _kept_rows(self)]
        messages = rate_schedule_errors(
            starts, model=self.instance.model, dynamic_mode=self.instance.dynamic_mode or None
        )
        if messages:
            raise ValidationError([_sentence(m) for m in messages])

    def rate_rows(self) -> list[services.RateRow]:
        """The rows that stay, in entry order, for ``price_create`` / ``price_update``."""
        return [services.RateRow(row.get("effective_from"), row.get("unit_price")) for row in _kept_rows(self)]


def _sentence(message: str) -> str:
    return message if message.endswith((".", "!", "?")) else f"{message}."

"""Subscription adjustments on the subscription page: listed for everyone who can see the page; finance (the
subscription change permission, "Billing admin") adds and deletes them through
``invoicing.services.adjustments``, the services the API calls. A viewer's GET or POST is refused."""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from catalog.models import Subscription
from catalog.selectors import subscription_prices
from core.formatting import decimal_string

from . import selectors
from .models import AdjustmentType, SubscriptionAdjustment
from .services.adjustments import (
    AdjustmentConflict,
    AdjustmentError,
    AdjustmentInput,
    subscription_adjustment_create,
    subscription_adjustment_delete,
)

_WIRE_TO_FORM = {
    "type": "type",
    "percentageDiscount": "number",
    "usageDiscount": "number",
    "minimumQuantity": "number",
    "maximumQuantity": "number",
    "targetPriceIds": "target_price",
    "effectiveFrom": "effective_from",
    "effectiveTo": "effective_to",
    "description": "description",
    "idempotencyKey": None,
}


@dataclass(frozen=True)
class _Page:
    explanation: str
    submit_label: str


class AdjustmentForm(forms.Form):
    type = forms.ChoiceField(choices=AdjustmentType.choices)
    number = forms.CharField(
        max_length=60,
        help_text='Percentage discount: a fraction in (0, 1], "0.1" is 10 %. Otherwise a quantity: plain digits, '
        "at most 6 decimal places.",
    )
    target_price = forms.ChoiceField(required=False, help_text="None for a percentage discount.")
    effective_from = forms.DateTimeField(help_text="UTC.")
    effective_to = forms.DateTimeField(required=False, help_text="UTC; empty: never ends.")
    description = forms.CharField(max_length=500, required=False)

    def __init__(self, *args, subscription: Subscription, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["target_price"].choices = [("", "—")] + [
            (price.pk, price.invoice_display_name) for price in subscription_prices(subscription)
        ]


def adjustment_text(adjustment: SubscriptionAdjustment) -> str:
    number = decimal_string(adjustment.number)
    if adjustment.type == AdjustmentType.PERCENTAGE_DISCOUNT:
        number = f"{decimal_string(adjustment.number * 100)}%"
    window = f"{adjustment.effective_from:%Y-%m-%d %H:%M} → "
    window += f"{adjustment.effective_to:%Y-%m-%d %H:%M} UTC" if adjustment.effective_to else "open-ended"
    target = f" on {adjustment.target_price.invoice_display_name}" if adjustment.target_price_id else ""
    return f"{adjustment.get_type_display()} {number}{target}, {window}"


class SubscriptionAdjustmentsAdminMixin:
    """Mixed into the subscription admin before ``SubscriptionServicesAdminMixin`` (billing_site.admin)."""

    adjustment_template = "invoicing/admin/subscription_action.html"

    def _adjustments_field(self, request, obj) -> str:
        # Finance sees the add and delete links; anyone else the list alone (no button that would answer 403).
        return "adjustments" if self.has_change_permission(request, obj) else "adjustments_listed"

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields if obj is None else (*fields, self._adjustments_field(request, obj))

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        return (*fieldsets, ("Adjustments", {"fields": (self._adjustments_field(request, obj),)}))

    @staticmethod
    def _rows(subscription: Subscription) -> list[SubscriptionAdjustment]:
        return list(selectors.subscription_adjustment_list(subscription=subscription).select_related("target_price"))

    @admin.display(description="Adjustments")
    def adjustments_listed(self, subscription: Subscription):
        listed = format_html_join("", "<li>{}</li>", ((adjustment_text(a),) for a in self._rows(subscription)))
        return format_html('<ul class="subscription-adjustments">{}</ul>', listed) if listed else "None."

    @admin.display(description="Adjustments")
    def adjustments(self, subscription: Subscription):
        listed = format_html_join(
            "",
            '<li>{} <a href="{}">delete</a></li>',
            (
                (
                    adjustment_text(a),
                    reverse(
                        "admin:invoicing_subscription_adjustment_delete",
                        args=[quote(subscription.pk), quote(a.pk)],
                    ),
                )
                for a in self._rows(subscription)
            ),
        )
        add = reverse("admin:invoicing_subscription_adjustment_add", args=[quote(subscription.pk)])
        return format_html(
            '<ul class="subscription-adjustments">{}</ul><a href="{}">Add an adjustment</a>', listed, add
        )

    def get_urls(self):
        own = [
            path(
                "<path:object_id>/adjustments/add/",
                self.admin_site.admin_view(self.adjustment_add_view),
                name="invoicing_subscription_adjustment_add",
            ),
            path(
                "<path:object_id>/adjustments/<str:adjustment_id>/delete/",
                self.admin_site.admin_view(self.adjustment_delete_view),
                name="invoicing_subscription_adjustment_delete",
            ),
        ]
        return own + super().get_urls()

    def _subscription_for_change(self, request, object_id: str) -> Subscription:
        subscription = self.get_queryset(request).filter(pk=unquote(object_id)).first()
        if subscription is None:
            raise Http404("No such subscription.")
        if not self.has_change_permission(request, subscription):
            raise PermissionDenied
        return subscription

    def _render(self, request, subscription, *, title, page, form, current=""):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "subtitle": str(subscription),
            "subscription": subscription,
            "action": page,
            "form": form,
            "change_url": reverse("admin:catalog_subscription_change", args=[quote(subscription.pk)]),
            "current": current,
            "consequences": [],
        }
        return TemplateResponse(request, self.adjustment_template, context)

    def adjustment_add_view(self, request, object_id: str):
        subscription = self._subscription_for_change(request, object_id)
        form = AdjustmentForm(request.POST if request.method == "POST" else None, subscription=subscription)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                subscription_adjustment_create(
                    subscription=subscription,
                    now=timezone.now(),
                    data=AdjustmentInput(
                        type=data["type"],
                        number=data["number"],
                        effective_from=data["effective_from"],
                        effective_to=data["effective_to"],
                        target_price_ids=(data["target_price"],) if data["target_price"] else (),
                        description=data["description"] or None,
                    ),
                )
            except AdjustmentError as error:
                form.add_error(_WIRE_TO_FORM.get(error.field), str(error))
            except AdjustmentConflict as error:
                form.add_error(None, str(error))
            else:
                self.message_user(request, "The adjustment was added.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:catalog_subscription_change", args=[quote(subscription.pk)]))
        page = _Page(
            explanation="It reaches the periods that close from now on; invoices already written keep their numbers.",
            submit_label="Add adjustment",
        )
        return self._render(request, subscription, title="Add an adjustment", page=page, form=form)

    def adjustment_delete_view(self, request, object_id: str, adjustment_id: str):
        subscription = self._subscription_for_change(request, object_id)
        adjustment = (
            selectors.subscription_adjustment_list(subscription=subscription)
            .select_related("target_price")
            .filter(pk=unquote(adjustment_id))
            .first()
        )
        if adjustment is None:
            raise Http404("No such adjustment.")
        if request.method == "POST":
            retracted = subscription_adjustment_delete(adjustment=adjustment)
            if retracted is None:
                message = "The adjustment was removed: no issued invoice had applied it."
            else:
                message = (
                    "An issued invoice applied it, so it was retracted: it now ends on "
                    f"{retracted.effective_to:%Y-%m-%d %H:%M} UTC."
                )
            self.message_user(request, message, messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:catalog_subscription_change", args=[quote(subscription.pk)]))
        page = _Page(
            explanation="Removed if no issued invoice applied it; otherwise it ends with the last period billed.",
            submit_label="Delete adjustment",
        )
        return self._render(
            request,
            subscription,
            title="Delete an adjustment",
            page=page,
            form=forms.Form(),
            current=adjustment_text(adjustment),
        )

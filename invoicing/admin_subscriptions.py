"""The subscription page, service-backed: finance starts, re-plans and ends subscriptions here exactly as the
API does, through ``invoicing.services`` (Invoice 0, proration, plan-change records, final invoices).

Catalog's ``SubscriptionAdmin`` keeps the lifecycle fields read-only on an existing subscription and cannot
add one (catalog must not import invoicing); ``SubscriptionServicesAdminMixin`` adds both, and
``billing_site.admin`` composes it with catalog's class and registers the result.
Each lifecycle change is a button on the change page that opens a small confirmation form; only staff with
the change permission ("Billing admin") see the buttons, and the views refuse everyone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from catalog.admin_refusals import ServiceRefusalAdminMixin, ServiceRefused
from catalog.models import SUBSCRIPTION_TERMS_FIELDS, Plan, Subscription, SubscriptionStatus
from catalog.pricing.currency import format_money

from . import selectors, services
from .calculation import subscription_period_at
from .intervals import negotiable_keys, negotiated_rate_add, subscription_timeline
from .models import IntervalChangeReason, InvoiceError, SubscriptionPlanChange

# The subscription fields the add page passes to the service through ``extra_fields``.
START_EXTRA_FIELDS = (
    "billing_mode",
    "auto_charge",
    "tax_exempt",
    "payment_term_days",
    "version_policy",
    "elapsed_period_billing",
    "metadata",
    "threshold_amount",
    "threshold_ladder",
    "threshold_recurring",
)

# The values the API accepts for these free-text columns: the admin offers the same as a choice.
WIRE_CHOICES = {"version_policy": ("floating", "pinned"), "elapsed_period_billing": ("none", "per_period")}


class SubscriptionAddForm(forms.ModelForm):
    """The add page's form; the name may be left empty (the service names it "customer · plan")."""

    class Meta:
        model = Subscription
        fields = (
            "merchant",
            "customer",
            "plan",
            "name",
            "started_at",
            "ending_at",
            "billing_anchor",
            "trial_ends_at",
            "test_clock",
            *START_EXTRA_FIELDS,
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "name" in self.fields:
            self.fields["name"].required = False
            self.fields["name"].help_text = "Empty: “customer · plan”."
        if "plan" in self.fields:
            # Narrows the admin's choices (already limited to the user's merchants), never widens them.
            plan_field = self.fields["plan"]
            plan_field.queryset = plan_field.queryset.filter(archived_at__isnull=True).select_related("product")


class PlanChoiceForm(forms.Form):
    plan = forms.ModelChoiceField(queryset=Plan.objects.none(), label="New plan")

    def __init__(self, *args, subscription: Subscription, **kwargs):
        super().__init__(*args, **kwargs)
        current = subscription.plan
        # A plan change keeps the currency and the cadence (the service refuses others anyway).
        self.fields["plan"].queryset = (
            Plan.objects.filter(
                merchant_id=subscription.merchant_id,
                currency=current.currency,
                billing_cadence=current.billing_cadence,
                archived_at__isnull=True,
            )
            .exclude(pk=current.pk)
            .select_related("product")
            .order_by("product__name", "name")
        )


class TerminateForm(forms.Form):
    NOW, PERIOD_END = "now", "period_end"
    when = forms.ChoiceField(
        choices=[
            (NOW, "Now: the final invoice bills up to now and credits unused in-advance days"),
            (PERIOD_END, "At the end of the current period: the period's regular invoice is the last one"),
        ],
        initial=NOW,
        widget=forms.RadioSelect,
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        error_messages={"required": "Give a reason: it is kept on the subscription and shown in its history."},
        help_text="Required. Kept on the subscription (termination reason) with who ended it.",
    )

    def __init__(self, *args, subscription: Subscription, **kwargs):
        super().__init__(*args, **kwargs)
        if subscription.status == SubscriptionStatus.PENDING_PAYMENT:
            # Never billed beyond Invoice 0: it ends now, with nothing to close.
            self.fields["when"].choices = self.fields["when"].choices[:1]


class NegotiatedRateForm(forms.Form):
    line = forms.ChoiceField(label="Plan line")
    unit_price = forms.DecimalField(
        max_digits=30,
        decimal_places=12,
        label="Negotiated rate per unit",
        help_text="Per unit, as stored: 0.0000015 per token is $0.0015 per 1K.",
    )
    end_date = forms.DateField(
        required=False,
        label="Ends",
        help_text="Optional (UTC). Empty: open-ended. The plan price bills again from the billing period starting "
        "on or after this date: a date inside a period keeps the rate to the end of that period.",
    )
    change_reason = forms.ChoiceField(choices=IntervalChangeReason.choices, initial=IntervalChangeReason.COMMERCIAL)
    description = forms.CharField(required=False, max_length=1000, help_text="Kept on the change record.")

    def __init__(self, *args, subscription: Subscription, **kwargs):
        super().__init__(*args, **kwargs)
        timeline = subscription_timeline(subscription=subscription)
        self.fields["line"].choices = [
            (key, f"{timeline.lines[key].invoice_display_name} ({key})") for key in negotiable_keys(timeline)
        ]


class ConfirmForm(forms.Form):
    """No fields: the page itself is the confirmation."""


@dataclass(frozen=True)
class LifecycleAction:
    slug: str
    label: str
    title: str
    form_class: type[forms.Form]
    submit_label: str
    explanation: str

    def url(self, subscription: Subscription) -> str:
        return reverse(f"admin:invoicing_subscription_{self.slug.replace('-', '_')}", args=[quote(subscription.pk)])


UPGRADE = LifecycleAction(
    "change-plan-now",
    "Change plan now",
    "Change plan now (upgrade, prorated)",
    PlanChoiceForm,
    "Change plan now",
    "The new plan applies from now. A plan-change invoice is issued at once: it bills the current plan's usage and "
    "in-arrears fees up to now, credits its unused in-advance fees and charges the new plan's for the rest of the "
    "period, prorated by day. The period's regular invoice then bills the new plan from now.",
)
DOWNGRADE = LifecycleAction(
    "change-plan-at-period-end",
    "Change plan at period end",
    "Change plan at period end (downgrade)",
    PlanChoiceForm,
    "Schedule the plan change",
    "The current plan stays until the end of the current period; its closing invoice bills it and the new plan's "
    "in-advance fees for the next period. A later plan change replaces this one.",
)
TERMINATE = LifecycleAction(
    "terminate",
    "Terminate",
    "Terminate the subscription",
    TerminateForm,
    "Terminate",
    "Ending now issues the final invoice at once. Ending at period end sets the scheduled end; the regular close "
    "of the period bills the last invoice, and “Cancel scheduled end” undoes it until then.",
)
CANCEL_END = LifecycleAction(
    "cancel-scheduled-end",
    "Cancel scheduled end",
    "Cancel the scheduled end",
    ConfirmForm,
    "Keep the subscription running",
    "The subscription keeps renewing after its scheduled end. Nothing is billed by this change.",
)
NEGOTIATE = LifecycleAction(
    "negotiate-rate",
    "Negotiate a rate",
    "Negotiate a rate for this customer",
    NegotiatedRateForm,
    "Set the negotiated rate",
    "The rate replaces the plan line's price for this customer from the first moment not yet invoiced (invoiced "
    "periods are never re-rated), or after the line's last negotiated rate ends, until the end you give "
    "(empty: open-ended); the plan price bills again after it. It is the API's price interval edit "
    "(POST /v0/subscriptions/{id}/intervals), recorded as an interval change.",
)
ACTIONS = (UPGRADE, DOWNGRADE, TERMINATE, CANCEL_END, NEGOTIATE)


def available_actions(subscription: Subscription) -> list[LifecycleAction]:
    if subscription.status == SubscriptionStatus.TERMINATED:
        return []
    if subscription.status == SubscriptionStatus.PENDING_PAYMENT:
        return [TERMINATE]
    actions = [UPGRADE, DOWNGRADE, TERMINATE]
    if subscription.ending_at is not None:
        actions.append(CANCEL_END)
    if not subscription.is_real_time:  # the intervals service refuses real-time subscriptions
        actions.append(NEGOTIATE)
    return actions


class SubscriptionServicesAdminMixin(ServiceRefusalAdminMixin):
    """The add page and the lifecycle buttons of the subscription page, all through the services: mixed into
    catalog's ``SubscriptionAdmin`` by ``billing_site.admin``."""

    change_form_template = "invoicing/admin/subscription_change_form.html"
    action_template = "invoicing/admin/subscription_action.html"

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        return (
            (fieldsets[0][0], {**fieldsets[0][1], "fields": (*fieldsets[0][1]["fields"], "scheduled_changes")}),
            *fieldsets[1:],
        )

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields if obj is None else (*fields, "scheduled_changes")

    @admin.display(description="Scheduled")
    def scheduled_changes(self, subscription: Subscription) -> str:
        parts = []
        change = (
            SubscriptionPlanChange.objects.filter(
                subscription=subscription, applied_at__isnull=True, canceled_at__isnull=True
            )
            .select_related("to_plan__product")
            .order_by("-requested_at")
            .first()
        )
        if change is not None:
            parts.append(f"Plan changes to {change.to_plan} on {change.effective_at:%Y-%m-%d %H:%M} UTC.")
        if subscription.ending_at is not None and subscription.status != SubscriptionStatus.TERMINATED:
            parts.append(f"Ends on {subscription.ending_at:%Y-%m-%d %H:%M} UTC.")
        return " ".join(parts) or "Nothing."

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name in WIRE_CHOICES:
            return forms.ChoiceField(
                choices=[(value, value) for value in WIRE_CHOICES[db_field.name]],
                label=db_field.verbose_name.capitalize(),
                initial=db_field.default,
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    # -- adding: subscription_create_with_upfront_payment, as the API -------------------------------

    def has_add_permission(self, request) -> bool:
        return admin.ModelAdmin.has_add_permission(self, request)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = SubscriptionAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def save_model(self, request, obj, form, change):
        now = timezone.now()
        data = form.cleaned_data
        if change:
            changes = {name: data[name] for name in form.changed_data if name in SUBSCRIPTION_TERMS_FIELDS}
            if not changes:
                return
            try:
                services.subscription_update(subscription=obj, changes=changes, now=now)
            except InvoiceError as error:
                raise ServiceRefused(f"Not saved: {error}") from None
            obj.refresh_from_db()
            return
        try:
            subscription = services.subscription_create_with_upfront_payment(
                customer=data["customer"],
                plan=data["plan"],
                started_at=data["started_at"],
                now=now,
                name=data.get("name") or "",
                ending_at=data.get("ending_at"),
                billing_anchor=data.get("billing_anchor"),
                trial_ends_at=data.get("trial_ends_at"),
                test_clock=data.get("test_clock"),
                extra_fields={name: data[name] for name in START_EXTRA_FIELDS if name in data},
            )
        except InvoiceError as error:
            raise ServiceRefused(f"The subscription was not started: {error}") from None
        # The admin goes on to log and link ``obj`` by its primary key (``log_addition``, ``response_add``;
        # nothing saves it again): make it the row the service created.
        obj.pk = subscription.pk
        obj.refresh_from_db()
        if subscription.catch_up is not None:
            run = subscription.catch_up.billing_run
            self.message_user(
                request,
                format_html(
                    '{} elapsed periods are being invoiced in the background by <a href="{}">{}</a>.',
                    subscription.catch_up.pending_periods,
                    reverse("admin:invoicing_billingrun_change", args=[run.pk]),
                    run,
                ),
                messages.INFO,
            )
        opening = services.subscription_opening_invoice(subscription)
        if opening is not None:
            waiting = (
                " The subscription is pending payment until it is paid."
                if subscription.status == SubscriptionStatus.PENDING_PAYMENT
                else ""
            )
            self.message_user(
                request,
                format_html(
                    'Invoice 0 <a href="{}">{}</a> was issued for {}.{}',
                    reverse("admin:invoicing_invoice_change", args=[quote(opening.pk)]),
                    opening,
                    format_money(opening.total, opening.currency),
                    waiting,
                ),
                messages.INFO,
            )

    # -- lifecycle buttons ----------------------------------------------------------------------------

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and self.has_change_permission(request, obj):
            context["subscription_actions"] = [
                {"slug": action.slug, "label": action.label, "url": action.url(obj)}
                for action in available_actions(obj)
            ]
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def get_urls(self):
        own = [
            path(
                f"<path:object_id>/{action.slug}/",
                self.admin_site.admin_view(self._lifecycle_view(action)),
                name=f"invoicing_subscription_{action.slug.replace('-', '_')}",
            )
            for action in ACTIONS
        ]
        return own + super().get_urls()

    def _lifecycle_view(self, action: LifecycleAction):
        def view(request, object_id):
            return self.lifecycle_view(request, object_id, action)

        return view

    def lifecycle_view(self, request, object_id: str, action: LifecycleAction):
        subscription = (
            self.get_queryset(request)
            .select_related("plan__product", "customer", "merchant", "test_clock")
            .filter(pk=unquote(object_id))
            .first()
        )
        if subscription is None:
            raise Http404("No such subscription.")
        if not self.has_change_permission(request, subscription):
            raise PermissionDenied
        change_url = reverse("admin:catalog_subscription_change", args=[quote(subscription.pk)])
        if action not in available_actions(subscription):
            self.message_user(
                request,
                f"“{action.title}” is not possible: the subscription is {subscription.get_status_display().lower()}"
                + (" and has no scheduled end." if action is CANCEL_END else "."),
                messages.ERROR,
            )
            return HttpResponseRedirect(change_url)
        form_kwargs = {} if action.form_class is ConfirmForm else {"subscription": subscription}
        form = action.form_class(request.POST if request.method == "POST" else None, **form_kwargs)
        if request.method == "POST" and form.is_valid():
            try:
                message = self._apply(request, action, subscription, form.cleaned_data)
            except InvoiceError as error:
                form.add_error(None, str(error))
            else:
                self.message_user(request, message, messages.SUCCESS)
                return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": action.title,
            "subtitle": str(subscription),
            "subscription": subscription,
            "action": action,
            "form": form,
            "change_url": change_url,
            "current": self._summary(subscription),
            "consequences": self._termination_consequences(subscription) if action is TERMINATE else [],
        }
        return TemplateResponse(request, self.action_template, context)

    def _summary(self, subscription: Subscription) -> str:
        period = subscription_period_at(subscription, services.subscription_now(subscription, timezone.now()))
        return (
            f"{subscription.customer.name} on {subscription.plan} ({subscription.get_status_display().lower()}); "
            f"current period {period.start:%Y-%m-%d} – {period.end:%Y-%m-%d}."
        )

    def _termination_consequences(self, subscription: Subscription) -> list[dict]:
        """What each choice of the terminate page does, with the final invoice composed as it would be now."""
        now = timezone.now()
        sub_now = services.subscription_now(subscription, now)
        if subscription.status == SubscriptionStatus.PENDING_PAYMENT:
            return [
                {
                    "when": f"Now ({sub_now:%Y-%m-%d %H:%M} UTC)",
                    "text": "The subscription ends at once. Nothing is billed: it was never billed beyond its "
                    "opening invoice.",
                    "lines": [],
                }
            ]
        period = subscription_period_at(subscription, sub_now)
        preview = selectors.subscription_termination_preview(subscription=subscription, now=now)
        now_choice = {
            "when": f"Now ({sub_now:%Y-%m-%d %H:%M} UTC)",
            "text": f"The final invoice is written at once for {period.start:%Y-%m-%d} to now (any earlier period "
            "not yet invoiced is closed first).",
            "lines": [],
        }
        if preview is not None:
            now_choice["lines"] = [
                (line.description, format_money(line.amount, preview.currency)) for line in preview.lines
            ]
            now_choice["total"] = format_money(preview.total, preview.currency)
        return [
            now_choice,
            {
                "when": f"At the end of the current period ({period.end:%Y-%m-%d %H:%M} UTC)",
                "text": "Nothing is billed now; the period's regular invoice is the last one.",
                "lines": [],
            },
        ]

    def _apply(self, request, action: LifecycleAction, subscription: Subscription, data: dict):
        now = timezone.now()
        if action is UPGRADE:
            invoice = services.subscription_upgrade(subscription=subscription, new_plan=data["plan"], now=now)
            return format_html(
                'Plan changed to {}. Plan-change invoice <a href="{}">{}</a>: {}.',
                data["plan"],
                reverse("admin:invoicing_invoice_change", args=[quote(invoice.pk)]),
                invoice,
                format_money(invoice.total, invoice.currency),
            )
        if action is DOWNGRADE:
            change = services.subscription_downgrade(subscription=subscription, new_plan=data["plan"], now=now)
            return f"{data['plan']} takes over on {change.effective_at:%Y-%m-%d %H:%M} UTC (the end of this period)."
        if action is TERMINATE:
            at_period_end = data["when"] == TerminateForm.PERIOD_END
            ended = services.subscription_terminate(
                subscription=subscription,
                now=now,
                at_period_end=at_period_end,
                reason=data["reason"],
                by=request.user.get_username(),
            )
            if ended.status != SubscriptionStatus.TERMINATED:
                return f"The subscription ends on {ended.ending_at:%Y-%m-%d %H:%M} UTC, at the end of this period."
            return format_html(
                'The subscription is terminated. <a href="{}?subscription__id__exact={}">Its invoices</a> include '
                "the final one.",
                reverse("admin:invoicing_invoice_changelist"),
                ended.pk,
            )
        if action is NEGOTIATE:
            timeline = subscription_timeline(subscription=subscription)
            end = data["end_date"]
            end = datetime.combine(end, time(), tzinfo=UTC) if end else None
            add = negotiated_rate_add(timeline, data["line"], data["unit_price"], end=end)
            edit = services.IntervalEdit(
                add=[add], change_reason=data["change_reason"], description=data["description"] or None
            )
            result = services.subscription_intervals_edit(subscription=subscription, edit=edit, now=now)
            added = next(
                i for i in result.intervals if i.price_key == data["line"] and i.start_date == add["startDate"]
            )
            until = f" until {added.end_date:%Y-%m-%d %H:%M} UTC" if added.end_date else ""
            return (
                f"{timeline.lines[data['line']].invoice_display_name} is billed at {data['unit_price']:f} per unit "
                f"for {subscription.customer.name} from {add['startDate']:%Y-%m-%d %H:%M} UTC{until}."
            )
        services.subscription_update(subscription=subscription, changes={"ending_at": None}, now=now)
        return "The scheduled end was canceled; the subscription keeps renewing."

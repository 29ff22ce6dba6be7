"""Entitlements and grants in the admin, for finance: balances as the API computes them, the grants with what
is left of each, and two actions that call the services (add a grant, void a grant).

Entitlements are issued through the API (``/v1/entitlements``), so their pages are read-only for everyone;
adding a grant needs the "add entitlement grant" permission and voiding one "change entitlement grant"
(the "Billing admin" role has both, "Billing viewer" neither).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from catalog.admin_scoping import MerchantScopedAdminMixin
from catalog.descriptions import format_number
from catalog.models import FeatureType

from . import entitlements as ent
from .burndown import ZERO
from .forms import GrantForm
from .models import Entitlement, EntitlementGrant

ADD_GRANT = "wallets.add_entitlementgrant"
VOID_GRANT = "wallets.change_entitlementgrant"


def _when(moment) -> str:
    return "—" if moment is None else f"{timezone.localtime(moment):%Y-%m-%d %H:%M}"


def _day(moment) -> str:
    """A period boundary: the date alone at midnight (the usual anchor), else the date and time."""
    if moment is None:
        return "—"
    local = timezone.localtime(moment)
    return f"{local:%Y-%m-%d}" if (local.hour, local.minute, local.second) == (0, 0, 0) else f"{local:%Y-%m-%d %H:%M}"


def _credits(value) -> str:
    """Credits as finance writes them: 1,000 and 0.5, never 1000.000000000000 or 1E+3."""
    return "—" if value is None else format_number(value)


def _state(entitlement: Entitlement) -> ent.EntitlementState | str:
    """The entitlement's state now, computed once per row (each column reads it), or why it cannot be."""
    cached = getattr(entitlement, "_admin_state", None)
    if cached is None:
        try:
            cached = ent.entitlement_state(entitlement, at=timezone.now())
        except ent.TooManyPeriods as exc:
            cached = str(exc)
        entitlement._admin_state = cached
    return cached


def _metered(entitlement: Entitlement) -> ent.EntitlementState | None:
    state = _state(entitlement)
    if isinstance(state, str) or entitlement.feature.type != FeatureType.METERED:
        return None
    return state


@admin.register(Entitlement)
class EntitlementAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    merchant_path = "merchant"
    list_display = (
        "customer",
        "feature",
        "status",
        "current_period",
        "granted",
        "usage_in_period",
        "balance",
        "overage",
        "has_access",
    )
    list_filter = ("feature__type", "merchant")
    list_select_related = ("customer", "feature", "feature__billable_metric")
    search_fields = ("id", "customer__name", "customer__external_id", "customer__id", "feature__key")
    list_per_page = 25  # every row computes its balance (one usage aggregate per period it walks)
    fieldsets = (
        (None, {"fields": ("id", "customer", "feature", "subscription", "status", "active_from", "active_to")}),
        (
            "Balance now",
            {
                "fields": (
                    "current_period",
                    "granted",
                    "usage_in_period",
                    "balance",
                    "overage",
                    "has_access",
                    "grants_table",
                    "periods_table",
                )
            },
        ),
        (
            "Terms",
            {
                "fields": (
                    "usage_period",
                    "usage_period_anchor",
                    "is_soft_limit",
                    "allowance",
                    "issue_after_reset_priority",
                    "allowance_max_rollover",
                    "allowance_min_rollover",
                    "preserve_overage_at_reset",
                    "config",
                    "metadata",
                    "created_at",
                )
            },
        ),
    )
    readonly_fields = tuple(name for _, options in fieldsets for name in options["fields"])

    def has_add_permission(self, request):
        return False  # issued through the API (POST /v1/entitlements)

    def has_change_permission(self, request, obj=None):
        return False  # read-only: grants are added and voided through the buttons on the page

    def has_delete_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        # Every row's balance reads its grants: prefetched, one query for the page.
        return (
            super()
            .get_queryset(request)
            .select_related("customer", "feature", "feature__billable_metric")
            .prefetch_related("grants")
        )

    # -- figures -------------------------------------------------------------------------------------

    @admin.display(description="Status")
    def status(self, obj):
        state = _state(obj)
        if isinstance(state, str):
            return "—"
        return state.status

    @admin.display(description="Usage period now")
    def current_period(self, obj):
        state = _metered(obj)
        if state is None:
            return _state(obj) if isinstance(_state(obj), str) else "—"
        end = "open-ended" if state.period_end is None else _day(state.period_end)
        return f"{_day(state.period_start)} → {end}"

    @admin.display(description="Granted this period")
    def granted(self, obj):
        state = _metered(obj)
        return "—" if state is None else _credits(state.granted)

    @admin.display(description="Usage in period")
    def usage_in_period(self, obj):
        state = _metered(obj)
        return "—" if state is None else _credits(state.usage_in_period)

    @admin.display(description="Balance")
    def balance(self, obj):
        state = _metered(obj)
        return "—" if state is None else _credits(state.balance)

    @admin.display(description="Overage")
    def overage(self, obj):
        state = _metered(obj)
        return "—" if state is None else _credits(state.overage)

    @admin.display(description="Has access", boolean=True)
    def has_access(self, obj):
        state = _state(obj)
        return None if isinstance(state, str) else state.has_access

    @admin.display(description="Issued at each reset (issueAfterReset)")
    def allowance(self, obj):
        return _credits(obj.issue_after_reset)

    @admin.display(description="Most of the allowance kept at a reset")
    def allowance_max_rollover(self, obj):
        return _credits(obj.reset_max_rollover or ZERO) if obj.issue_after_reset else "—"

    @admin.display(description="Least of the allowance kept at a reset")
    def allowance_min_rollover(self, obj):
        return _credits(obj.reset_min_rollover or ZERO) if obj.issue_after_reset else "—"

    @admin.display(description="Grants")
    def grants_table(self, obj):
        if obj.feature.type != FeatureType.METERED:
            return "Only metered entitlements take grants."
        state = _metered(obj)
        can_void = getattr(obj, "_can_void_grant", False)
        grants = list(ent.grant_list(entitlement=obj, include_voided=True))
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td></tr>",
            (
                (
                    g.pk,
                    _credits(g.amount),
                    self._remaining(state, g),
                    g.priority,
                    _when(g.effective_at),
                    _when(g.expires_at),
                    _rollover(g),
                    _when(g.voided_at),
                    self._void_link(obj, g) if can_void and g.voided_at is None else "",
                )
                for g in grants
            ),
        )
        allowance = ""
        if state is not None and state.allowance is not None:
            allowance = format_html(
                "<p>Per-period allowance: {} issued at each reset, {} left this period.</p>",
                _credits(obj.issue_after_reset),
                _credits(state.allowance.remaining),
            )
        add = ""
        if getattr(obj, "_can_add_grant", False):
            add = format_html(
                '<p><a class="button" href="{}">Add grant</a></p>',
                reverse("admin:wallets_entitlement_grant_add", args=[quote(obj.pk)]),
            )
        if not grants:
            return format_html("{}No grants yet.{}", allowance, add)
        return format_html(
            "{}<table><thead><tr><th>Grant</th><th>Credits</th><th>Left now</th><th>Priority</th>"
            "<th>Effective</th><th>Expires</th><th>Kept at a reset</th><th>Voided</th><th></th></tr></thead>"
            "<tbody>{}</tbody></table>{}",
            allowance,
            rows,
            add,
        )

    @admin.display(description="Usage periods walked")
    def periods_table(self, obj):
        state = _metered(obj)
        if state is None or not state.periods:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    _when(p.start),
                    _when(p.end),
                    _credits(p.granted),
                    _credits(p.carried_overage),
                    _credits(p.usage),
                    _credits(p.overage),
                    _credits(p.balance),
                )
                for p in reversed(state.periods)
            ),
        )
        return format_html(
            "<table><thead><tr><th>From</th><th>To</th><th>Granted</th><th>Overage carried in</th><th>Usage</th>"
            "<th>Overage</th><th>Balance at end</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @staticmethod
    def _remaining(state, grant) -> str:
        if state is None:
            return "—"
        account = state.grants.get(grant.pk)
        if account is None or not account.started:
            return "not yet in force" if grant.effective_at > timezone.now() else "0"
        return _credits(account.remaining)

    @staticmethod
    def _void_link(entitlement, grant):
        return format_html(
            '<a href="{}">Void</a>',
            reverse("admin:wallets_entitlement_grant_void", args=[quote(entitlement.pk), grant.pk]),
        )

    def get_object(self, request, object_id, from_field=None):
        # The grants panel shows only the buttons its reader may use; the display methods see the object,
        # not the request, so the reader's permissions travel on this request's instance.
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            obj._can_add_grant = request.user.has_perm(ADD_GRANT)
            obj._can_void_grant = request.user.has_perm(VOID_GRANT)
        return obj

    # -- actions that call the services ----------------------------------------------------------------

    def get_urls(self):
        extra = [
            path(
                "<path:object_id>/grants/add/",
                self.admin_site.admin_view(self.grant_add_view),
                name="wallets_entitlement_grant_add",
            ),
            path(
                "<path:object_id>/grants/<str:grant_id>/void/",
                self.admin_site.admin_view(self.grant_void_view),
                name="wallets_entitlement_grant_void",
            ),
        ]
        return extra + super().get_urls()

    def _page(self, request, template: str, **context):
        return TemplateResponse(
            request,
            template,
            {**self.admin_site.each_context(request), "opts": self.model._meta, **context},
        )

    def grant_add_view(self, request, object_id):
        if not request.user.has_perm(ADD_GRANT):
            raise PermissionDenied
        entitlement = get_object_or_404(self.get_queryset(request), pk=unquote(object_id))
        now = timezone.now()
        form = GrantForm(request.POST or None, now=now)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                grant, created = ent.entitlement_grant_create(
                    entitlement=entitlement,
                    amount=data["amount"],
                    idempotency_key=data["idempotency_key"],
                    now=now,
                    effective_at=data["effective_at"],
                    expires_at=data["expires_at"],
                    priority=data["priority"],
                    reset_max_rollover=data["reset_max_rollover"],
                    reset_min_rollover=data["reset_min_rollover"],
                )
            except ent.EntitlementConflict as exc:
                form.add_error(None, exc.message)
            except ValidationError as exc:
                for message in exc.messages:
                    form.add_error(None, message)
            else:
                if created:
                    messages.success(request, f"Grant {grant.pk} of {_credits(grant.amount)} credits added.")
                return redirect(reverse("admin:wallets_entitlement_change", args=[quote(entitlement.pk)]))
        return self._page(
            request,
            "admin/wallets/grant_form.html",
            entitlement=entitlement,
            form=form,
            title=f"Add a grant to {entitlement.feature.key} for {entitlement.customer}",
        )

    def grant_void_view(self, request, object_id, grant_id):
        if not request.user.has_perm(VOID_GRANT):
            raise PermissionDenied
        entitlement = get_object_or_404(self.get_queryset(request), pk=unquote(object_id))
        grant = get_object_or_404(EntitlementGrant, entitlement=entitlement, pk=grant_id)
        if request.method == "POST":
            if grant.voided_at is not None:
                messages.info(request, f"Grant {grant.pk} was already voided on {_when(grant.voided_at)}.")
            else:
                grant = ent.entitlement_grant_void(grant=grant, now=timezone.now())
                messages.success(request, f"Grant {grant.pk} voided: its credits no longer count from now.")
            return redirect(reverse("admin:wallets_entitlement_change", args=[quote(entitlement.pk)]))
        state = _metered(entitlement)
        return self._page(
            request,
            "admin/wallets/grant_void.html",
            entitlement=entitlement,
            grant=grant,
            remaining=self._remaining(state, grant),
            title=f"Void grant {grant.pk}",
        )


def _rollover(grant: EntitlementGrant) -> str:
    high = grant.reset_max_rollover
    most = "all" if high is None or high >= ent.UNLIMITED_ROLLOVER else f"at most {_credits(high)}"
    low = grant.reset_min_rollover
    return most if not low else f"{most}, at least {_credits(low)}"


@admin.register(EntitlementGrant)
class EntitlementGrantAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    """Every grant, for searching across entitlements; the only change is voiding (an action)."""

    merchant_path = "entitlement__merchant"

    list_display = ("id", "entitlement", "amount", "priority", "effective_at", "expires_at", "voided_at", "created_at")
    list_filter = ("entitlement__feature", "entitlement__merchant")
    list_select_related = ("entitlement",)
    search_fields = ("id", "idempotency_key", "entitlement__id", "entitlement__customer__name")
    date_hierarchy = "effective_at"
    actions = ("void_selected",)
    readonly_fields = (
        "id",
        "entitlement",
        "amount",
        "idempotency_key",
        "priority",
        "effective_at",
        "expires_at",
        "voided_at",
        "reset_max_rollover",
        "reset_min_rollover",
        "created_at",
    )
    fields = readonly_fields

    def has_add_permission(self, request):
        return False  # from the entitlement's page (Add grant) or the API

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        # The action needs change permission on the changelist; the grant's own page stays read-only.
        return obj is None and request.user.has_perm(VOID_GRANT)

    @admin.action(description="Void selected grants", permissions=["change"])
    def void_selected(self, request, queryset):
        now = timezone.now()
        voided = 0
        for grant in queryset:
            if grant.voided_at is None:
                ent.entitlement_grant_void(grant=grant, now=now)
                voided += 1
        messages.success(request, f"Voided {voided} grant(s); {queryset.count() - voided} were already void.")

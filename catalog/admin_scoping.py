"""Staff limited to merchants: every admin page of the billing apps shows a bound user only their merchants.

A staff user with ``StaffMerchantAccess`` rows works only on those merchants; without rows (and always for a
superuser) on every merchant (``catalog.selectors.staff_merchant_ids``). Every ``ModelAdmin`` and inline of
catalog, metering, wallets, invoicing, payments, costs and reporting mixes in ``MerchantScopedAdminMixin`` and declares
``merchant_path``, its model's lookup path to the merchant (``"merchant"``, ``"wallet__merchant"``…; ``"pk"``
for the merchant itself; ``None`` for platform-wide rows such as billing runs, which only unrestricted staff
see). From that one declaration:

- ``get_queryset`` keeps the user's merchants, so the change list, search, actions, date hierarchy, object
  pages (another merchant's object answers 404), delete, history and autocomplete (Django's autocomplete
  view reads the related admin's ``get_queryset``) are all scoped; custom views fetch through it too;
- foreign-key (and many-to-many) choices of merchant-owned models offer only the user's merchants' rows, so
  adding or changing an object cannot point it at another merchant;
- relational list filters list only the user's merchants' rows.

``manage.py check`` refuses an admin that does not declare a path leading to ``catalog.Merchant``.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import NotRelationField, get_fields_from_path, unquote
from django.core import checks
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Q, QuerySet
from django.http import Http404

from .admin_numbers import NormalizedNumbersAdminMixin
from .models import Merchant
from .selectors import staff_merchant_ids

_SCOPE_ATTRIBUTE = "meterline_merchant_ids"
_UNSET = object()
# ``related_merchant_path`` of a model that belongs to no merchant (users, content types…): not restricted.
UNSCOPED = object()


def request_merchant_ids(request) -> frozenset[str] | None:
    """The merchants this request's user may work on (None: every merchant), read once per request."""
    cached = getattr(request, _SCOPE_ATTRIBUTE, _UNSET)
    if cached is _UNSET:
        cached = staff_merchant_ids(user=request.user)
        setattr(request, _SCOPE_ATTRIBUTE, cached)
    return cached


def merchant_filter(merchant_ids: frozenset[str] | None, merchant_path: str | None) -> Q | None:
    """The condition keeping ``merchant_ids``' rows of a model reached by ``merchant_path``; None: keep all."""
    if merchant_ids is None:
        return None
    if merchant_path is None:
        return Q(pk__in=[])
    return Q(**{f"{merchant_path}__in": sorted(merchant_ids)})


def scope_queryset(queryset: QuerySet, merchant_ids: frozenset[str] | None, merchant_path: str | None) -> QuerySet:
    condition = merchant_filter(merchant_ids, merchant_path)
    return queryset if condition is None else queryset.filter(condition)


def related_merchant_path(admin_site, model):
    """How rows of ``model`` reach their merchant, for choices and filters pointing at it; ``UNSCOPED`` if never."""
    if model is Merchant:
        return "pk"
    if admin_site.is_registered(model):
        model_admin = admin_site.get_model_admin(model)
        if isinstance(model_admin, MerchantScopedAdminMixin):
            return model_admin.merchant_path
    try:
        field = model._meta.get_field("merchant")
    except FieldDoesNotExist:
        return UNSCOPED
    return "merchant" if getattr(field, "related_model", None) is Merchant else UNSCOPED


def _scope_choices(formfield, admin_site, request, related_model):
    if formfield is None or not hasattr(formfield, "queryset"):
        return formfield
    merchant_ids = request_merchant_ids(request)
    path = related_merchant_path(admin_site, related_model)
    if merchant_ids is not None and path is not UNSCOPED:
        formfield.queryset = scope_queryset(formfield.queryset, merchant_ids, path)
    return formfield


class MerchantScopedRelatedFieldListFilter(admin.RelatedFieldListFilter):
    """A relational list filter that lists only the rows of the user's merchants."""

    def field_choices(self, field, request, model_admin):
        condition = merchant_filter(
            request_merchant_ids(request), related_merchant_path(model_admin.admin_site, field.related_model)
        )
        if condition is None:
            return super().field_choices(field, request, model_admin)
        ordering = self.field_admin_ordering(field, request, model_admin)
        return field.get_choices(include_blank=False, ordering=ordering, limit_choices_to=condition)


class MerchantScopedAdminMixin(NormalizedNumbersAdminMixin):
    """Keeps a staff user bound to merchants inside their merchants on this admin page (see the module).

    Every billing admin mixes it in, so it also carries how they show numbers (``admin_numbers``).
    """

    merchant_path: str | None  # every subclass declares it (``manage.py check`` says which one did not)

    def get_queryset(self, request):
        return scope_queryset(super().get_queryset(request), request_merchant_ids(request), self.merchant_path)

    def scoped_object_or_404(self, request, object_id, queryset: QuerySet | None = None):
        """The object of a custom view (PDF, button…), found only among the user's merchants' rows."""
        queryset = self.get_queryset(request) if queryset is None else queryset
        obj = queryset.filter(pk=unquote(object_id)).first()
        if obj is None:
            raise Http404(f"No {self.model._meta.verbose_name} with this ID.")
        return obj

    def history_view(self, request, object_id, extra_context=None):
        self._history_scope_check(request, object_id)
        return super().history_view(request, object_id, extra_context)

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        # Only routed by simple-history's admin (``AttributedHistoryAdmin``), which refuses POSTs itself.
        self._history_scope_check(request, object_id)
        return super().history_form_view(request, object_id, version_id, extra_context)

    def _history_scope_check(self, request, object_id) -> None:
        # simple-history reads history rows directly (and shows a deleted object's): a staff user bound to
        # merchants sees only the history of an object of theirs that still exists.
        if request_merchant_ids(request) is not None:
            self.scoped_object_or_404(request, object_id)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)
        return _scope_choices(formfield, self.admin_site, request, db_field.related_model)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        formfield = super().formfield_for_manytomany(db_field, request, **kwargs)
        return _scope_choices(formfield, self.admin_site, request, db_field.related_model)

    def get_list_filter(self, request):
        entries = super().get_list_filter(request)
        if request_merchant_ids(request) is None:
            return entries
        return [self._scoped_list_filter(entry) for entry in entries]

    def _scoped_list_filter(self, entry):
        if not isinstance(entry, str):
            return entry  # (field, FilterClass) and SimpleListFilter classes scope themselves
        try:
            field = get_fields_from_path(self.model, entry)[-1]
        except (FieldDoesNotExist, NotRelationField):
            return entry
        if getattr(field, "related_model", None) is None:
            return entry
        if related_merchant_path(self.admin_site, field.related_model) is UNSCOPED:
            return entry
        return (entry, MerchantScopedRelatedFieldListFilter)

    def check(self, **kwargs):
        return [*super().check(**kwargs), *self._check_merchant_path()]

    def _check_merchant_path(self) -> list[checks.CheckMessage]:
        name = type(self).__qualname__
        path = getattr(self, "merchant_path", _UNSET)
        if path is _UNSET:
            return [checks.Error(f"{name} declares no merchant_path.", obj=type(self), id="catalog.E001")]
        if path is None:
            return []
        if path == "pk":
            ok = self.model is Merchant
        else:
            try:
                field = get_fields_from_path(self.model, path)[-1]
            except (FieldDoesNotExist, NotRelationField):
                field = None
            ok = getattr(field, "related_model", None) is Merchant
        if ok:
            return []
        return [
            checks.Error(
                f"{name}.merchant_path {path!r} does not lead from {self.model.__name__} to a merchant.",
                obj=type(self),
                id="catalog.E002",
            )
        ]

"""``core.db.instance_from_row`` builds the same instances ``Model.from_db`` builds, without
``Model.__init__`` where that is safe, and defers to it elsewhere."""

from __future__ import annotations

import pytest
from django.db.models import signals

from catalog.models import Customer, Subscription
from core.db import _plain_attnames, instance_from_row
from invoicing.models import Invoice
from tests.factories import CustomerFactory, SubscriptionFactory
from wallets.models import CreditLot, Wallet

pytestmark = pytest.mark.django_db


def _row(instance):
    names = tuple(field.attname for field in type(instance)._meta.concrete_fields)
    return names, tuple(getattr(instance, name) for name in names)


def _same(built, loaded):
    assert type(built) is type(loaded)
    assert {k: v for k, v in built.__dict__.items() if k != "_state"} == {
        k: v for k, v in loaded.__dict__.items() if k != "_state"
    }
    assert (built._state.adding, built._state.db) == (loaded._state.adding, loaded._state.db) == (False, "default")


@pytest.mark.parametrize("factory", [CustomerFactory, SubscriptionFactory])
def test_a_full_row_gives_the_instance_from_db_gives(factory):
    stored = factory()
    names, values = _row(type(stored).objects.get(pk=stored.pk))
    built = instance_from_row(type(stored), "default", names, values)
    _same(built, type(stored).from_db("default", names, values))
    assert built == stored and built.pk == stored.pk


def test_the_built_instance_behaves_like_a_loaded_one():
    subscription = SubscriptionFactory()
    names, values = _row(Subscription.objects.get(pk=subscription.pk))
    built = instance_from_row(Subscription, "default", names, values)
    assert built.customer == subscription.customer  # relations load on access
    assert built._state.fields_cache == {"customer": subscription.customer}
    built.name = "Renamed"
    built.save(update_fields=["name"])  # an update, not an insert: the state says loaded
    assert Subscription.objects.get(pk=subscription.pk).name == "Renamed"
    assert Subscription.objects.count() == 1


def test_a_partial_row_is_loaded_by_from_db_with_the_rest_deferred():
    customer = CustomerFactory(name="Acme")
    built = instance_from_row(Customer, "default", ("id", "name"), (customer.pk, "Acme"))
    assert built.get_deferred_fields() >= {"email", "merchant_id"}
    assert built.email == customer.email  # fetched on access, as from_db's instances are


def test_models_that_load_themselves_keep_their_from_db():
    # Invoice.from_db records the loaded amounts that make a finalized invoice immutable.
    assert _plain_attnames(Invoice) is None
    assert _plain_attnames(Wallet) is not None and _plain_attnames(CreditLot) is not None


def test_init_signal_receivers_are_honoured():
    customer = CustomerFactory()
    names, values = _row(Customer.objects.get(pk=customer.pk))
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance.pk)

    signals.post_init.connect(receiver, sender=Customer)
    try:
        built = instance_from_row(Customer, "default", names, values)
    finally:
        signals.post_init.disconnect(receiver, sender=Customer)
    assert seen == [customer.pk]
    _same(built, Customer.from_db("default", names, values))

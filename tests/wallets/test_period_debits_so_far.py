"""The usage-cost read of running period totals: every plan segment of each asked period, nothing else."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.factories import SubscriptionFactory
from wallets.models import PeriodDebitTotal
from wallets.selectors import PeriodDebits, period_debits_so_far

pytestmark = pytest.mark.django_db

DEC_1 = datetime(2026, 12, 1, tzinfo=UTC)
DEC_15 = datetime(2026, 12, 15, tzinfo=UTC)
JAN_1 = datetime(2027, 1, 1, tzinfo=UTC)
NOV_1 = datetime(2026, 11, 1, tzinfo=UTC)


def _total(subscription, start, end, debited, overage="0"):
    PeriodDebitTotal.objects.create(
        subscription=subscription,
        period_start=start,
        period_end=end,
        debited=Decimal(debited),
        overage=Decimal(overage),
    )


def test_each_period_adds_its_plan_segments_and_nothing_outside_it(django_assert_num_queries):
    upgraded, other, untouched = SubscriptionFactory(), SubscriptionFactory(), SubscriptionFactory()
    # December of `upgraded` in two plan segments (an upgrade on the 15th), and its November
    _total(upgraded, DEC_1, JAN_1, "1.000000000001", "0.5")
    _total(upgraded, DEC_15, JAN_1, "2.25", "0.25")
    _total(upgraded, NOV_1, DEC_1, "100")
    # `other`: December, and a segment ending elsewhere (another period) that must not count
    _total(other, DEC_1, JAN_1, "0.000002")
    _total(other, DEC_15, DEC_1.replace(month=12, day=20), "7")

    with django_assert_num_queries(1):
        found = period_debits_so_far(
            periods=[(upgraded.pk, DEC_1, JAN_1), (other.pk, DEC_1, JAN_1), (untouched.pk, DEC_1, JAN_1)]
        )

    assert found == {
        upgraded.pk: PeriodDebits(debited=Decimal("3.250000000001"), overage=Decimal("0.75")),
        other.pk: PeriodDebits(debited=Decimal("0.000002"), overage=Decimal("0")),
        untouched.pk: PeriodDebits(debited=Decimal("0"), overage=Decimal("0")),
    }


def test_no_periods_reads_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert period_debits_so_far(periods=[]) == {}

"""The one debit decision (``wallets.services.debit_decision``): how a positive usage cost is paid under each
policy, worked by hand, and the properties every decision keeps. Pure: no database."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wallets.models import BalancePolicy
from wallets.services import DEFAULT_POLICY, DebitDecision, debit_decision

D = Decimal
AUTO = {"auto_top_up_threshold": D(5), "auto_top_up_amount": D(20)}


def _decide(amount, *, spendable, policy, balance=None, **settings_):
    balance = D(spendable) if balance is None else D(balance)
    return debit_decision(D(amount), balance=balance, spendable=D(spendable), policy=policy, **settings_)


# -- block ---------------------------------------------------------------------------------------------


def test_block_refuses_a_cost_above_the_spendable_credit_and_spends_nothing():
    assert _decide("8", spendable="5", policy=BalancePolicy.BLOCK) == DebitDecision(D(0), D(0), True, D(0))
    assert _decide("5.000000000001", spendable="5", policy=BalancePolicy.BLOCK).refused is True


def test_block_accepts_exactly_the_spendable_credit():
    assert _decide("5", spendable="5", policy=BalancePolicy.BLOCK) == DebitDecision(D(5), D(0), False, D(0))


def test_block_counts_the_spendable_credit_not_the_balance():
    # $10 of balance, but $7 of it is reserved capacity for another metric: $3 may pay
    decision = _decide("4", spendable="3", balance="10", policy=BalancePolicy.BLOCK)
    assert decision == DebitDecision(D(0), D(0), True, D(0))


def test_delivered_usage_is_never_refused_under_block_its_uncovered_part_is_overage():
    decision = _decide("11", spendable="5", policy=BalancePolicy.BLOCK, overage_allowed=True)
    assert decision == DebitDecision(D(5), D(6), False, D(0))


# -- allow overage -------------------------------------------------------------------------------------


def test_overage_the_credit_pays_what_it_can_and_the_rest_is_overage():
    assert _decide("8", spendable="5", policy=BalancePolicy.ALLOW_OVERAGE) == DebitDecision(D(5), D(3), False, D(0))


def test_overage_without_any_credit_is_all_overage():
    decision = _decide("2.5", spendable="0", balance="-4", policy=BalancePolicy.ALLOW_OVERAGE)
    assert decision == DebitDecision(D(0), D("2.5"), False, D(0))


def test_overage_a_covered_cost_is_paid_from_credit():
    assert _decide("3", spendable="10", policy=BalancePolicy.ALLOW_OVERAGE) == DebitDecision(D(3), D(0), False, D(0))


def test_the_default_policy_is_overage_and_ignores_top_up_settings():
    assert DEFAULT_POLICY == BalancePolicy.ALLOW_OVERAGE
    decision = _decide("8", spendable="5", policy=DEFAULT_POLICY, auto_top_up_armed=True, **AUTO)
    assert decision == DebitDecision(D(5), D(3), False, D(0))


# -- automatic top-up (threshold 5, top-up 20) ---------------------------------------------------------


def test_auto_top_up_fires_when_an_armed_wallet_crosses_the_threshold():
    # 6 - 3 = 3 < 5: the configured 20 is added first, the debit is paid from credit
    decision = _decide("3", spendable="6", policy=BalancePolicy.AUTO_TOP_UP, auto_top_up_armed=True, **AUTO)
    assert decision == DebitDecision(D(3), D(0), False, D(20))


def test_auto_top_up_landing_exactly_on_the_threshold_does_not_fire():
    decision = _decide("5", spendable="10", policy=BalancePolicy.AUTO_TOP_UP, auto_top_up_armed=True, **AUTO)
    assert decision == DebitDecision(D(5), D(0), False, D(0))


def test_auto_top_up_disarmed_and_covered_does_not_fire():
    decision = _decide("3", spendable="6", policy=BalancePolicy.AUTO_TOP_UP, auto_top_up_armed=False, **AUTO)
    assert decision == DebitDecision(D(3), D(0), False, D(0))


def test_auto_top_up_disarmed_still_covers_a_cost_the_credit_cannot():
    # 30 with 2 left: the top-up is what the credit lacks (28), above the configured 20
    decision = _decide("30", spendable="2", policy=BalancePolicy.AUTO_TOP_UP, auto_top_up_armed=False, **AUTO)
    assert decision == DebitDecision(D(30), D(0), False, D(28))


def test_auto_top_up_of_the_configured_amount_when_it_exceeds_the_shortfall():
    # 4 with no spendable credit (the balance is reserved for another metric): 20 > 4
    decision = _decide("4", spendable="0", balance="10", policy=BalancePolicy.AUTO_TOP_UP, **AUTO)
    assert decision == DebitDecision(D(4), D(0), False, D(20))


def test_auto_top_up_without_its_settings_falls_back_to_overage():
    decision = _decide("8", spendable="5", policy=BalancePolicy.AUTO_TOP_UP, auto_top_up_armed=True)
    assert decision == DebitDecision(D(5), D(3), False, D(0))


# -- properties ----------------------------------------------------------------------------------------

_money = st.decimals(min_value=0, max_value=D("1e9"), places=12, allow_nan=False, allow_infinity=False)


@settings(max_examples=500, deadline=None)
@given(
    amount=_money.filter(lambda v: v > 0),
    spendable=_money,
    balance=st.decimals(min_value=D("-1e9"), max_value=D("1e9"), places=12, allow_nan=False, allow_infinity=False),
    policy=st.sampled_from(BalancePolicy.values),
    overage_allowed=st.booleans(),
    armed=st.booleans(),
    threshold=st.none() | _money,
    top_up_amount=st.none() | _money.filter(lambda v: v > 0),
)
def test_the_parts_sum_to_the_amount_and_never_spend_more_than_the_credit(
    amount, spendable, balance, policy, overage_allowed, armed, threshold, top_up_amount
):
    decision = debit_decision(
        amount,
        balance=balance,
        spendable=spendable,
        policy=policy,
        overage_allowed=overage_allowed,
        auto_top_up_armed=armed,
        auto_top_up_threshold=threshold,
        auto_top_up_amount=top_up_amount,
    )

    if decision.refused:
        # only the block policy refuses, only what the credit cannot cover, and then nothing is spent
        assert (policy, overage_allowed) == (BalancePolicy.BLOCK, False)
        assert amount > spendable
        assert (decision.from_credit, decision.overage, decision.auto_top_up) == (0, 0, 0)
        return
    assert decision.from_credit + decision.overage == amount
    assert decision.from_credit >= 0 and decision.overage >= 0 and decision.auto_top_up >= 0
    assert decision.from_credit <= spendable + decision.auto_top_up
    if decision.overage:
        # overage only once the credit is used up, and never on a refusable block debit
        assert decision.from_credit == spendable
        assert policy != BalancePolicy.BLOCK or overage_allowed
    if decision.auto_top_up:
        assert policy == BalancePolicy.AUTO_TOP_UP
        assert decision.auto_top_up >= top_up_amount
        assert decision.overage == 0


@pytest.mark.parametrize("policy", BalancePolicy.values)
def test_a_covered_cost_is_paid_from_credit_under_every_policy_without_a_top_up(policy):
    assert _decide("4", spendable="4", policy=policy) == DebitDecision(D(4), D(0), False, D(0))

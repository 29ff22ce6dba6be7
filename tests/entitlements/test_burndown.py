"""wallets.burndown without the database: burn order, phases, rollover at resets, preserved overage, and
hypothesis properties (no negative credits, no grant burned past what it was given, usage conserved)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from wallets.burndown import (
    ALLOWANCE,
    Allowance,
    BurnDown,
    GrantTerms,
    PeriodUsage,
    burn_down,
    checkpoints,
    walk_start,
)

D = Decimal
T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def day(n: float) -> datetime:
    return T0 + n * DAY


def grant(key: str, amount, *, at: float = 0, created: float | None = None, **terms) -> GrantTerms:
    return GrantTerms(
        key=key,
        amount=D(amount),
        effective_at=day(at),
        created_at=day(at if created is None else created),
        **terms,
    )


def walk(
    grants: Sequence[GrantTerms],
    events: Sequence[tuple[float, object]],
    *,
    periods: int = 1,
    length: float = 10,
    until: float | None = None,
    allowance: Allowance | None = None,
    preserve_overage: bool = False,
) -> BurnDown:
    """Burn ``grants`` over ``periods`` periods of ``length`` days from T0 (the last cut at ``until``), with
    usage events (day, amount) summed the way the selector's SQL aggregate would be."""
    end_of_walk = day(periods * length if until is None else until)
    usages = []
    for number in range(periods):
        start, end = day(number * length), min(day((number + 1) * length), end_of_walk)
        to_date = tuple(
            (moment, sum((D(str(amount)) for when, amount in events if start <= day(when) < moment), D(0)))
            for moment in checkpoints(start=start, end=end, grants=grants)
        )
        usages.append(PeriodUsage(start=start, end=end, resets=number > 0, to_date=to_date))
    return burn_down(periods=usages, grants=grants, allowance=allowance, preserve_overage=preserve_overage)


def remaining(result: BurnDown) -> dict[str, Decimal]:
    return {key: account.remaining for key, account in result.sources.items()}


# -- order --------------------------------------------------------------------------------------------


def test_the_allowance_burns_first_then_priority_then_earlier_expiry_then_older():
    grants = [
        grant("late-expiry", 20, priority=0, expires_at=day(9)),
        grant("early-expiry", 20, priority=0, expires_at=day(8)),
        grant("low-priority", 50, priority=1),
        grant("old-no-expiry", 5, priority=0, created=-2),
        grant("new-no-expiry", 5, priority=0, created=-1),
    ]

    result = walk(grants, [(1, 57)], allowance=Allowance(amount=D(10)), until=5)

    assert remaining(result) == {
        ALLOWANCE: D(0),
        "early-expiry": D(0),
        "late-expiry": D(0),
        "old-no-expiry": D(0),
        "new-no-expiry": D(3),
        "low-priority": D(50),
    }
    assert (result.overage, result.balance) == (D(0), D(53))


def test_negative_priority_burns_ahead_of_the_default():
    result = walk([grant("default", 10), grant("correction", 4, priority=-1)], [(1, 6)])

    assert remaining(result) == {"default": D(8), "correction": D(0)}


def test_an_allowance_priority_places_it_among_the_grants_ahead_of_equal_priorities():
    grants = [grant("first", 10, priority=0), grant("same-as-allowance", 10, priority=2)]

    result = walk(grants, [(1, 15)], allowance=Allowance(amount=D(10), priority=2))

    assert remaining(result) == {"first": D(0), ALLOWANCE: D(5), "same-as-allowance": D(10)}


# -- phases within a period ----------------------------------------------------------------------------


def test_usage_after_a_grants_expiry_never_burns_it():
    grants = [grant("expiring", 100, expires_at=day(4)), grant("lasting", 50, priority=5)]

    result = walk(grants, [(1, 30), (6, 70)])

    account = result.sources["expiring"]
    assert (account.burned, account.expired, account.remaining) == (D(30), D(70), D(0))
    assert remaining(result)["lasting"] == D(0)
    assert (result.overage, result.balance) == (D(20), D(-20))


def test_a_grant_that_starts_later_in_the_period_absorbs_the_overage_before_it():
    result = walk([grant("top-up", 100, at=4)], [(1, 30), (6, 10)], until=8)

    assert remaining(result) == {"top-up": D(60)}
    assert result.overage == D(0)


def test_a_void_stops_the_grant_at_the_void_time_and_keeps_its_place_before_it():
    grants = [grant("voided", 40, voided_at=day(3)), grant("other", 40, priority=1)]

    result = walk(grants, [(1, 10), (5, 10)])

    assert (result.sources["voided"].burned, result.sources["voided"].expired) == (D(10), D(30))
    assert remaining(result) == {"voided": D(0), "other": D(30)}


def test_a_meter_whose_period_to_date_value_falls_never_unburns():
    grants = [grant("g", 100), grant("marker", 1, at=3)]
    periods = [
        PeriodUsage(
            start=day(0),
            end=day(10),
            resets=False,
            to_date=((day(3), D(40)), (day(10), D(25))),  # e.g. a LATEST meter
        )
    ]

    result = burn_down(periods=periods, grants=grants)

    assert remaining(result) == {"g": D(60), "marker": D(1)}
    assert result.periods[0].usage == D(25)


# -- resets -------------------------------------------------------------------------------------------


def test_at_a_reset_a_grant_keeps_its_balance_bounded_by_its_rollover():
    grants = [grant("capped", 100, max_rollover=D(30))]

    result = walk(grants, [(1, 40), (12, 10)], periods=2)

    account = result.sources["capped"]
    assert (account.burned, account.rolled_off, account.remaining) == (D(50), D(30), D(20))
    assert [p.granted for p in result.periods] == [D(100), D(30)]


def test_a_minimum_rollover_floors_the_balance_up_at_each_reset():
    result = walk([grant("floored", 100, min_rollover=D(50))], [(1, 100), (12, 20)], periods=2)

    account = result.sources["floored"]
    assert (account.floored, account.burned, account.remaining) == (D(50), D(120), D(30))


def test_without_bounds_the_whole_balance_rolls_over_across_periods():
    result = walk([grant("g", 100)], [(1, 30), (11, 30), (21, 30)], periods=3)

    assert remaining(result) == {"g": D(10)}
    assert [p.balance for p in result.periods] == [D(70), D(40), D(10)]


def test_the_allowance_is_issued_afresh_and_its_unused_part_is_dropped_by_default():
    result = walk([], [(1, 30), (11, 120)], periods=2, allowance=Allowance(amount=D(100)))

    assert [(p.granted, p.usage, p.overage) for p in result.periods] == [
        (D(100), D(30), D(0)),
        (D(100), D(120), D(20)),
    ]
    assert result.sources[ALLOWANCE].rolled_off == D(70)


def test_the_allowance_carries_its_unused_part_up_to_the_templates_maximum():
    allowance = Allowance(amount=D(100), max_rollover=D(50))

    result = walk([], [(1, 30), (11, 120)], periods=2, allowance=allowance)

    assert [p.granted for p in result.periods] == [D(100), D(150)]
    assert (result.balance, result.sources[ALLOWANCE].rolled_off) == (D(30), D(20))


def test_overage_is_dropped_at_a_reset_unless_preserved():
    events = [(1, 130), (11, 10)]
    allowance = Allowance(amount=D(100))

    dropped = walk([], events, periods=2, allowance=allowance)
    preserved = walk([], events, periods=2, allowance=allowance, preserve_overage=True)

    assert (dropped.balance, dropped.forgiven_overage) == (D(90), D(30))
    assert (preserved.balance, preserved.forgiven_overage) == (D(60), D(0))
    assert preserved.periods[1].carried_overage == D(30)


def test_preserved_overage_larger_than_the_new_credits_stays_overage():
    result = walk([], [(1, 250)], periods=2, allowance=Allowance(amount=D(100)), preserve_overage=True)

    assert [(p.overage, p.balance) for p in result.periods] == [(D(150), D(-150)), (D(50), D(-50))]


def test_a_grant_starting_exactly_at_a_reset_starts_whole():
    result = walk([grant("at-reset", 100, at=10, max_rollover=D(0))], [(12, 5)], periods=2)

    assert remaining(result) == {"at-reset": D(95)}


# -- the walk's extent ---------------------------------------------------------------------------------


def test_the_walk_goes_back_through_grants_in_force_when_it_starts():
    grants = [
        grant("old", 10, at=0, expires_at=day(25)),
        grant("older", 10, at=-30, expires_at=day(5)),  # in force when "old" started
        grant("gone", 10, at=-90, expires_at=day(-60)),  # ended before: cannot matter
    ]

    assert walk_start(grants=grants, current_start=day(20)) == day(-30)


def test_checkpoints_cut_the_window_where_grants_start_or_end():
    grants = [grant("a", 1, at=2, expires_at=day(4)), grant("b", 1, at=-1, voided_at=day(12))]

    assert checkpoints(start=day(0), end=day(10), grants=grants) == [day(2), day(4), day(10)]
    assert checkpoints(start=day(3), end=day(3), grants=grants) == []


# -- properties ---------------------------------------------------------------------------------------

amounts = st.decimals(min_value=D("0.5"), max_value=1000, places=2, allow_nan=False, allow_infinity=False)
bounds = st.none() | st.decimals(min_value=0, max_value=200, places=1, allow_nan=False, allow_infinity=False)
hours = st.integers(min_value=-48, max_value=30 * 24)


@st.composite
def grant_lists(draw) -> list[GrantTerms]:
    grants = []
    for number in range(draw(st.integers(min_value=0, max_value=6))):
        start = draw(hours)
        expiry = draw(st.none() | st.integers(min_value=1, max_value=20 * 24))
        void = draw(st.none() | st.integers(min_value=0, max_value=20 * 24))
        low, high = draw(bounds), draw(bounds)
        if low is not None and high is not None and low > high:
            low, high = high, low
        grants.append(
            GrantTerms(
                key=f"g{number}",
                amount=draw(amounts),
                effective_at=T0 + timedelta(hours=start),
                created_at=T0 + timedelta(hours=draw(hours)),
                priority=draw(st.integers(min_value=-1, max_value=2)),
                expires_at=None if expiry is None else T0 + timedelta(hours=start + expiry),
                voided_at=None if void is None else T0 + timedelta(hours=start + void),
                max_rollover=high,
                min_rollover=low or D(0),
            )
        )
    return grants


allowances = st.none() | st.builds(
    Allowance,
    amount=amounts,
    priority=st.none() | st.integers(min_value=-1, max_value=2),
    max_rollover=st.decimals(min_value=0, max_value=50, places=0, allow_nan=False, allow_infinity=False),
    min_rollover=st.just(D(0)),
)
usage_events = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=29.99, allow_nan=False),
        st.decimals(min_value=0, max_value=300, places=2, allow_nan=False, allow_infinity=False),
    ),
    max_size=12,
)


def _run(grants, events, allowance, preserve):
    return walk(grants, events, periods=3, length=10, allowance=allowance, preserve_overage=preserve)


@settings(max_examples=300, deadline=None)
@given(grants=grant_lists(), events=usage_events, allowance=allowances, preserve=st.booleans())
def test_every_account_balances_and_never_goes_negative(grants, events, allowance, preserve):
    result = _run(grants, events, allowance, preserve)

    for key, account in result.sources.items():
        assert account.remaining >= 0, key
        assert min(account.burned, account.expired, account.rolled_off, account.floored) >= 0, key
        assert account.issued + account.floored == (
            account.burned + account.expired + account.rolled_off + account.remaining
        ), key
    for terms in grants:
        account = result.sources[terms.key]
        assert account.issued in (D(0), terms.amount)
        assert account.burned <= terms.amount + account.floored  # never consumed beyond what it was given


@settings(max_examples=300, deadline=None)
@given(grants=grant_lists(), events=usage_events, allowance=allowances, preserve=st.booleans())
def test_usage_is_conserved_and_overage_only_when_credits_are_gone(grants, events, allowance, preserve):
    result = _run(grants, events, allowance, preserve)

    burned = sum((account.burned for account in result.sources.values()), D(0))
    total_usage = sum((D(str(amount)) for _, amount in events), D(0))
    assert result.usage_burned == total_usage
    assert burned + result.forgiven_overage + result.overage == total_usage
    if result.balance < 0:
        assert result.overage == -result.balance and result.credits == 0
    if result.overage > 0:
        assert result.credits == 0
    if not preserve:
        assert result.overage <= sum((D(str(a)) for when, a in events if when >= 20), D(0))


@settings(max_examples=200, deadline=None)
@given(
    amounts_=st.lists(amounts, min_size=1, max_size=5),
    priorities=st.lists(st.integers(min_value=-1, max_value=2), min_size=5, max_size=5),
    events=usage_events,
)
def test_one_period_with_grants_in_force_throughout_is_granted_minus_usage_in_order(amounts_, priorities, events):
    grants = [
        GrantTerms(key=f"g{i}", amount=a, effective_at=T0, created_at=T0 + timedelta(seconds=i), priority=p)
        for i, (a, p) in enumerate(zip(amounts_, priorities, strict=False))
    ]

    result = walk(grants, events, periods=1, length=30)

    usage = sum((D(str(amount)) for _, amount in events), D(0))
    assert result.balance == sum(amounts_, D(0)) - usage
    ordered = sorted(grants, key=GrantTerms.order)
    left = [result.sources[g.key].remaining for g in ordered]
    # burned as a prefix: once a grant still has credits, every grant after it is untouched
    for earlier, later in zip(ordered, ordered[1:], strict=False):
        if result.sources[earlier.key].remaining > 0:
            assert result.sources[later.key].remaining == later.amount, left

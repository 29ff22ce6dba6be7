"""Grant burn-down across usage periods: plain Python (no ORM, no database), so it is tested on its own.

The model is Paygentic's (``paygentic-sdk`` 0.6.3 ``models/grant.py``, ``creategrantrequest.py``,
``entitlementtemplate.py``), which is OpenMeter's credit engine: wallets/ENTITLEMENTS.md ("Burn-down")
states the rules; in short:

- Credits come from *sources*: the per-period allowance (``issueAfterReset``) and the grants.
- Usage burns the sources in order: the allowance first (or at ``issueAfterResetPriority`` among the
  grants, ahead of grants of the same priority), then grants by ``priority`` (lower first), then earlier
  ``expiresAt`` (no expiry last), then older (``createdAt``, then id).
- A usage period is cut into phases at every moment a grant starts, expires or is voided, so usage after a
  grant's expiry never burns it and usage before a grant's start burns other grants first. Usage that no
  source covers is overage; a grant that starts later in the same period absorbs it.
- At each reset (the start of every usage period but the first), a grant in force keeps
  ``min(resetMaxRollover, max(resetMinRollover, balance))`` (no maximum: everything rolls over); the
  allowance becomes ``issueAfterReset`` + the same bound of its unused balance with the template's
  ``resetMaxRollover`` / ``resetMinRollover`` (defaults 0: nothing carries). Overage is dropped, or, with
  ``preserveOverageAtReset``, burned from the new period's credits (what they do not cover stays overage).

Usage arrives as period-to-date values (the meter aggregated from the period's start to each phase end, one
SQL aggregate each, done by the caller); a phase burns the rise of that value over its highest earlier value,
so for sums and counts the phases add up to the period's usage exactly, and a meter whose period-to-date
value can fall (LATEST, AVG, negative values) never un-burns credits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from core.durations import Duration, add_duration

ZERO = Decimal(0)
ALLOWANCE = "allowance"  # the key of the issueAfterReset source
# A read walks every usage period since the oldest grant still in force (one aggregate per period);
# past this many periods it is refused instead of running for minutes.
MAX_PERIODS = 10_000


class TooManyPeriods(ValueError):
    """The walk would cover more than MAX_PERIODS usage periods."""


@dataclass(frozen=True)
class GrantTerms:
    """What the burn-down needs of one grant (``ends_at``: the earlier of expiry and void)."""

    key: str
    amount: Decimal
    effective_at: datetime
    created_at: datetime
    priority: int = 0
    expires_at: datetime | None = None
    voided_at: datetime | None = None
    max_rollover: Decimal | None = None  # None: the whole balance rolls over
    min_rollover: Decimal = ZERO

    @property
    def ends_at(self) -> datetime | None:
        ends = [t for t in (self.expires_at, self.voided_at) if t is not None]
        return min(ends) if ends else None

    def active_at(self, moment: datetime) -> bool:
        ends = self.ends_at
        return self.effective_at <= moment and (ends is None or moment < ends)

    def order(self) -> tuple:
        # The void time is left out on purpose: before a void, the grant burned in its usual place.
        no_expiry = self.expires_at is None
        return (1, self.priority, 1, no_expiry, self.expires_at or self.created_at, self.created_at, self.key)


@dataclass(frozen=True)
class Allowance:
    """``issueAfterReset``: credits issued at the start of every usage period."""

    amount: Decimal
    priority: int | None = None  # None: burns before every grant
    max_rollover: Decimal = ZERO
    min_rollover: Decimal = ZERO

    def order(self) -> tuple:
        # No priority: ahead of every grant; else among the grants, ahead of those of the same priority.
        return (0,) if self.priority is None else (1, self.priority, 0)


@dataclass(frozen=True)
class PeriodUsage:
    """One walked usage period: its usage window [start, end) and the meter's period-to-date value at each
    phase end (``to_date``: (moment, usage over [start, moment)), ascending, the last at ``end``; empty when
    the window is). ``resets``: the period opens with a reset (every walked period but the first)."""

    start: datetime
    end: datetime
    resets: bool
    to_date: tuple[tuple[datetime, Decimal], ...] = ()


@dataclass
class SourceBalance:
    """One source's account. Invariant: issued + floored = burned + expired + rolled_off + remaining."""

    key: str
    issued: Decimal = ZERO  # the grant's amount once it started; the allowance: once per period
    burned: Decimal = ZERO  # consumed by usage (and by overage carried into a period)
    expired: Decimal = ZERO  # left when the grant expired or was voided
    rolled_off: Decimal = ZERO  # cut by resetMaxRollover at resets
    floored: Decimal = ZERO  # added by resetMinRollover at resets
    remaining: Decimal = ZERO
    started: bool = False
    ended: bool = False


@dataclass(frozen=True)
class PeriodResult:
    start: datetime
    end: datetime
    usage: Decimal  # the meter over the whole window (the last period-to-date value)
    granted: Decimal  # credits the period had: balances after its reset plus grants that started in it
    carried_overage: Decimal  # overage brought in by preserveOverageAtReset
    burned: Decimal
    overage: Decimal  # at the period's end
    balance: Decimal  # at the period's end: credits left minus overage


@dataclass
class BurnDown:
    sources: dict[str, SourceBalance]
    periods: list[PeriodResult]
    overage: Decimal = ZERO
    forgiven_overage: Decimal = ZERO  # overage dropped at resets (preserveOverageAtReset false)
    usage_burned: Decimal = ZERO  # usage the phases burned or left as overage, all periods

    @property
    def credits(self) -> Decimal:
        return sum((s.remaining for s in self.sources.values()), ZERO)

    @property
    def balance(self) -> Decimal:
        return self.credits - self.overage


# -- the walk's extent --------------------------------------------------------------------------------


def period_index(*, anchor: datetime, interval: Duration, moment: datetime) -> int:
    """n such that ``moment`` lies in [anchor + n·interval, anchor + (n+1)·interval)."""
    if interval.months:
        count = ((moment.year - anchor.year) * 12 + moment.month - anchor.month) // interval.months
    else:
        count = int((moment - anchor) // interval.exact)
    while add_duration(anchor, interval, count) > moment:
        count -= 1
    while add_duration(anchor, interval, count + 1) <= moment:
        count += 1
    return count


def walk_start(*, grants: Iterable[GrantTerms], current_start: datetime) -> datetime:
    """The earliest moment whose usage can still change today's balances: the start of the current period,
    moved back to the start of every grant that was in force at the walk's start (repeatedly, since such a
    grant shared earlier periods with grants that ended before the current one)."""
    grants = list(grants)
    start = current_start
    moved = True
    while moved:
        moved = False
        for grant in grants:
            ends = grant.ends_at
            if grant.effective_at < start and (ends is None or ends > start):
                start, moved = grant.effective_at, True
    return start


def checkpoints(*, start: datetime, end: datetime, grants: Iterable[GrantTerms]) -> list[datetime]:
    """The phase ends of the window [start, end): every grant start, expiry or void inside it, and ``end``."""
    if end <= start:
        return []
    moments = {end}
    for grant in grants:
        for moment in (grant.effective_at, grant.ends_at):
            if moment is not None and start < moment < end:
                moments.add(moment)
    return sorted(moments)


# -- the burn-down ------------------------------------------------------------------------------------


def _bounded(balance: Decimal, *, minimum: Decimal, maximum: Decimal | None) -> Decimal:
    carried = max(minimum, balance)
    return carried if maximum is None else min(maximum, carried)


@dataclass
class _Walk:
    grants: list[GrantTerms]
    allowance: Allowance | None
    accounts: dict[str, SourceBalance] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def __post_init__(self):
        terms: list[tuple[tuple, str]] = [(g.order(), g.key) for g in self.grants]
        if self.allowance is not None:
            terms.append((self.allowance.order(), ALLOWANCE))
            self.accounts[ALLOWANCE] = SourceBalance(ALLOWANCE)
        for grant in self.grants:
            self.accounts[grant.key] = SourceBalance(grant.key)
        self.order = [key for _, key in sorted(terms)]
        self.by_key = {g.key: g for g in self.grants}

    def settle(self, moment: datetime) -> Decimal:
        """Start the grants in force from ``moment`` (full amount) and end those that stopped; returns the
        credits that started."""
        started = ZERO
        for grant in self.grants:
            account = self.accounts[grant.key]
            if account.ended:
                continue
            ends = grant.ends_at
            if ends is not None and ends <= moment:
                account.expired += account.remaining
                account.remaining, account.ended = ZERO, True
            elif not account.started and grant.effective_at <= moment:
                account.issued += grant.amount
                account.remaining, account.started = grant.amount, True
                started += grant.amount
        return started

    def live(self, key: str) -> bool:
        account = self.accounts[key]
        return key == ALLOWANCE or (account.started and not account.ended)

    def burn(self, amount: Decimal) -> Decimal:
        """Burn ``amount`` from the live sources in order; returns what none covered."""
        for key in self.order:
            if amount <= 0:
                break
            account = self.accounts[key]
            if not self.live(key) or account.remaining <= 0:
                continue
            take = min(account.remaining, amount)
            account.remaining -= take
            account.burned += take
            amount -= take
        return max(amount, ZERO)

    def issue_allowance(self) -> None:
        if self.allowance is not None:
            account = self.accounts[ALLOWANCE]
            account.issued += self.allowance.amount
            account.remaining += self.allowance.amount

    def reset(self, moment: datetime) -> None:
        """Bound what each source in force at ``moment`` carries over, then issue the allowance."""
        for key, account in self.accounts.items():
            if not self.live(key) or (key != ALLOWANCE and not self.by_key[key].active_at(moment)):
                continue
            if key == ALLOWANCE:
                minimum, maximum = self.allowance.min_rollover, self.allowance.max_rollover
            else:
                grant = self.by_key[key]
                minimum, maximum = grant.min_rollover, grant.max_rollover
            kept = _bounded(account.remaining, minimum=minimum, maximum=maximum)
            if kept > account.remaining:
                account.floored += kept - account.remaining
            else:
                account.rolled_off += account.remaining - kept
            account.remaining = kept
        self.issue_allowance()

    def credits(self) -> Decimal:
        return sum((a.remaining for key, a in self.accounts.items() if self.live(key)), ZERO)

    def burned(self) -> Decimal:
        return sum((a.burned for a in self.accounts.values()), ZERO)


def burn_down(
    *,
    periods: Sequence[PeriodUsage],
    grants: Iterable[GrantTerms],
    allowance: Allowance | None = None,
    preserve_overage: bool = False,
) -> BurnDown:
    """Walk ``periods`` (oldest first, contiguous) and return every source's account, each period's figures
    and the overage at the end of the last period. ``grants`` should be those that can be in force during
    the walk (others are ignored: they never start)."""
    walk = _Walk(grants=list(grants), allowance=allowance)
    overage = forgiven = usage_burned = ZERO
    results: list[PeriodResult] = []
    for index, period in enumerate(periods):
        carried = ZERO
        if index == 0:
            walk.issue_allowance()
        elif period.resets:
            walk.reset(period.start)
            carried = overage if preserve_overage else ZERO
            forgiven += overage - carried
            overage = ZERO
        else:
            carried = overage
            overage = ZERO
        walk.settle(period.start)
        granted = walk.credits()
        burned_before = walk.burned()
        overage = walk.burn(carried)
        highest = ZERO
        phase_start = period.start
        usage = ZERO
        for moment, to_date in period.to_date:
            granted += walk.settle(phase_start)
            rise = max(ZERO, to_date - highest)
            highest = max(highest, to_date)
            usage_burned += rise
            overage = walk.burn(rise + overage)
            phase_start, usage = moment, to_date
        if index == len(periods) - 1:
            # Grants starting exactly at the walk's end count now (and absorb the period's overage); for
            # earlier periods the next period's settle starts them after its reset.
            granted += walk.settle(period.end)
            overage = walk.burn(overage)
        results.append(
            PeriodResult(
                start=period.start,
                end=period.end,
                usage=usage,
                granted=granted,
                carried_overage=carried,
                burned=walk.burned() - burned_before,
                overage=overage,
                balance=walk.credits() - overage,
            )
        )
    return BurnDown(
        sources=walk.accounts,
        periods=results,
        overage=overage,
        forgiven_overage=forgiven,
        usage_burned=usage_burned,
    )

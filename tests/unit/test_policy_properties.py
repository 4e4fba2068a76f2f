"""Properties of the whole policy over random streams of candidates and user signals.

Streams mix promotions from several businesses, utility messages, replays and signals
(reads, "not interested", inbound messages, opt-outs, blocks, reports) arriving late,
over a few days that include a daylight-saving change. The oracles below are computed
from the stream itself, not from the state the core keeps.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain.consent import apply_signal
from pipeline.domain.decide import decide_batch
from pipeline.domain.keys import message_id
from pipeline.domain.models import (
    ALL_BUSINESSES,
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    WEEK_MS,
    Account,
    AccountStatus,
    BusinessEvent,
    Candidate,
    Category,
    Consent,
    Decision,
    Deliver,
    EventKind,
    MarketingCaps,
    Policy,
    QuietHours,
    Recipient,
    Scope,
    SignalKind,
    SubscriberState,
    Template,
    UserSignal,
)

POLICY = Policy("properties")
# Looser caps, under which the 4 h gap between one business's messages matters too.
LOOSE = Policy("loose", marketing=MarketingCaps(per_user_24h=3, per_user_7d=8, per_business_24h=2))
# 2024-03-08 00:00 UTC: New York changes to summer time two days later.
T0 = int(datetime(2024, 3, 8, tzinfo=UTC).timestamp() * 1000)
SUBSCRIBERS = ("s1", "s2")
BUSINESSES = ("b1", "b2", "b3", "b4")
ZONES = {
    "s1": ("Asia/Jakarta",),
    "s2": ("Europe/Moscow", "Asia/Vladivostok"),
}


@dataclass(frozen=True)
class Send:
    """A candidate to decide: a promotion (or utility message) from a business."""

    subscriber: str
    business: str
    marketing: bool
    relevant: bool
    gap: int  # ms after the previous step


@dataclass(frozen=True)
class Replay:
    """The candidate of an earlier step, decided again (the same event id)."""

    step: int
    gap: int


@dataclass(frozen=True)
class Signal:
    subscriber: str
    kind: SignalKind
    business: str | None
    scope: Scope
    text: str | None
    gap: int
    lag: int  # how long before its consumption the signal occurred (late arrival)


@dataclass(frozen=True)
class Move:
    """The user's linked account now has another time zone (they travelled)."""

    subscriber: str
    timezone: str | None
    gap: int


Step = Send | Replay | Signal | Move

_gaps = st.one_of(
    st.sampled_from([0, 1_000, 6_000, 10 * MINUTE_MS, 4 * HOUR_MS, 20 * HOUR_MS, DAY_MS]),
    st.integers(0, 6 * HOUR_MS),
)
_sends = st.builds(
    Send,
    subscriber=st.sampled_from(SUBSCRIBERS),
    business=st.sampled_from(BUSINESSES),
    marketing=st.booleans() | st.just(True),
    relevant=st.booleans() | st.just(True),
    gap=_gaps,
)
_replays = st.builds(Replay, step=st.integers(0, 60), gap=_gaps)
_engagement = st.builds(
    Signal,
    subscriber=st.sampled_from(SUBSCRIBERS),
    # NOT_INTERESTED is rare: it lowers the cap to one a week, which would hide the rest.
    kind=st.sampled_from(
        [SignalKind.READ] * 12 + [SignalKind.INBOUND_MESSAGE] * 6 + [SignalKind.NOT_INTERESTED]
    ),
    business=st.sampled_from([*BUSINESSES, None]),
    scope=st.just(Scope.ALL),
    text=st.sampled_from([None, "thanks", "where is my parcel?"]),
    gap=_gaps,
    lag=st.integers(0, 2 * HOUR_MS),
)
STOP_ALLS = frozenset({"stop all", "Berhenti semua"})
STOPS = STOP_ALLS | {"STOP", "baja"}
_restrictive = st.builds(
    Signal,
    subscriber=st.sampled_from(SUBSCRIBERS),
    kind=st.sampled_from(
        [SignalKind.OPT_OUT, SignalKind.BLOCK, SignalKind.REPORT, SignalKind.INBOUND_MESSAGE]
    ),
    business=st.sampled_from(["b1", "b1", "b2", None]),  # b1 often: the oracle needs hits
    scope=st.sampled_from(list(Scope)),
    text=st.sampled_from([*sorted(STOPS), "hello"]),
    gap=_gaps,
    lag=st.integers(0, 2 * HOUR_MS),
)
# Signals that may lawfully restore something, but never marketing: utility opt-ins, and
# unblocks (which the oracle treats as restoring the block only).
_restoring = st.builds(
    Signal,
    subscriber=st.sampled_from(SUBSCRIBERS),
    kind=st.sampled_from([SignalKind.OPT_IN, SignalKind.UNBLOCK]),
    business=st.sampled_from([*BUSINESSES, None]),
    scope=st.just(Scope.UTILITY),
    text=st.none(),
    gap=_gaps,
    lag=st.integers(0, 2 * HOUR_MS),
)
_timezones = st.sampled_from(["UTC", "Asia/Jakarta", "America/New_York", "Europe/Madrid", None])
_moves = st.builds(Move, subscriber=st.sampled_from(SUBSCRIBERS), timezone=_timezones, gap=_gaps)


def _state(timezone: str | None) -> SubscriberState:
    account = Account("x", AccountStatus.ACTIVE, "en", "ID", 0, timezone, ("sale", "travel"))
    return SubscriberState(
        account=account, consents=MappingProxyType({ALL_BUSINESSES: Consent(True, True)})
    )


def _candidate(index: int, send: Send) -> Candidate:
    kind = EventKind.PROMOTION if send.marketing else EventKind.SHIPMENT_UPDATE
    event = BusinessEvent(
        f"e{index}", send.business, kind, 0, (), Template("t", "en", (str(index),)),
        tags=("sale",) if send.relevant else ("garden",),
    )  # fmt: skip
    category = Category.MARKETING if send.marketing else Category.UTILITY
    region = "ID" if send.subscriber == "s1" else "RU"
    return Candidate(event, category, Recipient(0, send.subscriber, region, ZONES[send.subscriber]))


@dataclass
class Run:
    """The outcome of a stream: every candidate decided, with its time."""

    decided: list[tuple[Candidate, Decision, int]]
    signals: list[tuple[UserSignal, int]]  # with the time each was consumed
    states: dict[str, SubscriberState]


def _run(
    steps: list[Step],
    timezone: str | None,
    start: int = T0,
    policy: Policy = POLICY,
    engaged: bool = False,
) -> Run:
    """Decide a stream; an engaged user reads every message sent before each decision."""
    states = {s: _state(timezone) for s in SUBSCRIBERS}
    now = start
    candidates: list[Candidate] = []
    run = Run([], [], states)
    for index, step in enumerate(steps):
        now += step.gap
        if isinstance(step, Move):
            state = states[step.subscriber]
            assert state.account is not None
            account = replace(state.account, timezone=step.timezone)
            states[step.subscriber] = replace(state, account=account)
            continue
        if isinstance(step, Signal):
            signal = UserSignal(
                step.subscriber, step.kind, now - step.lag, step.business, step.scope, step.text
            )
            states[step.subscriber] = apply_signal(states[step.subscriber], signal, policy)
            run.signals.append((signal, now))
            continue
        if isinstance(step, Replay):
            if not candidates:
                continue
            candidate = candidates[step.step % len(candidates)]
        else:
            candidate = _candidate(index, step)
            candidates.append(candidate)
        subscriber = candidate.recipient.subscriber
        if engaged:
            read = UserSignal(subscriber, SignalKind.READ, now)
            states[subscriber] = apply_signal(states[subscriber], read, policy)
        decisions = decide_batch([candidate], states, policy, now)
        assert len(decisions) == 1
        run.decided.append((candidate, decisions[0], now))
    return run


def _counted_sends(run: Run, policy: Policy = POLICY) -> dict[str, list[tuple[int, str]]]:
    """Per subscriber, the (send time, business) of counted marketing deliveries.

    Counted unless the user wrote to the business less than the service window before the
    decision (an inbound signal consumed before it): the oracle reads the stream.
    """
    sends: dict[str, dict[str, tuple[int, str]]] = defaultdict(dict)
    seen: set[str] = set()
    for candidate, decision, now in run.decided:
        if decision.message_id in seen:
            continue  # a replay: the first decision said whether it counts
        seen.add(decision.message_id)
        if candidate.category != Category.MARKETING or not isinstance(decision, Deliver):
            continue
        business = candidate.event.business_id
        subscriber = candidate.recipient.subscriber
        opened = any(
            signal.kind == SignalKind.INBOUND_MESSAGE
            and signal.business_id == business
            and signal.subscriber == subscriber
            and consumed <= now
            and now - signal.occurred_at < policy.marketing.service_window_ms
            for signal, consumed in run.signals
        )
        if opened:
            continue
        at = decision.deliver_after if decision.deliver_after is not None else now
        sends[subscriber][decision.message_id] = (at, business)
    return {s: sorted(v.values()) for s, v in sends.items()}


def _max_in_window(times: list[int], width: int) -> int:
    """The most send times found in any window (x - width, x]."""
    return max((sum(1 for y in times if x - width < y <= x) for x in times), default=0)


# Mostly promotions, so that streams press against the caps.
# (st.one_of treats repeated strategies as one, so the weights are drawn explicitly.)
_busy = st.integers(0, 15).flatmap(
    lambda i: _sends if i < 11 else _replays if i < 13 else _engagement if i < 15 else _moves
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(_busy, min_size=20, max_size=60),
    _timezones,
    st.integers(0, 2 * DAY_MS),
    st.sampled_from([POLICY, LOOSE]),
    st.booleans(),
)
def test_caps_hold_in_every_rolling_window(
    steps: list[Step], timezone: str | None, offset: int, policy: Policy, engaged: bool
) -> None:
    """Counted marketing send times never exceed a cap in any rolling 24 h or 7 d window,
    nor the per-business cap and gap, whatever the holds, moves and engagement."""
    caps = policy.marketing
    run = _run(steps, timezone, T0 + offset, policy, engaged)
    for sends in _counted_sends(run, policy).values():
        times = [at for at, _ in sends]
        assert _max_in_window(times, DAY_MS) <= caps.per_user_24h
        assert _max_in_window(times, WEEK_MS) <= caps.per_user_7d
        for business in BUSINESSES:
            own = [at for at, b in sends if b == business]
            assert _max_in_window(own, DAY_MS) <= caps.per_business_24h
            assert all(b - a >= caps.min_gap_ms for a, b in itertools.pairwise(own))


@settings(max_examples=100, deadline=None)
@given(st.lists(_busy, max_size=60), _timezones)
def test_exactly_one_decision_per_candidate_and_replays_repeat(
    steps: list[Step], timezone: str | None
) -> None:
    """Each candidate gets one decision with its message id; a replay repeats the first."""
    run = _run(steps, timezone)
    first: dict[str, Decision] = {}
    for candidate, decision, _ in run.decided:
        assert decision.message_id == message_id(
            candidate.event.event_id, candidate.recipient.subscriber
        )
        assert first.setdefault(decision.message_id, decision) == decision


def _forbidden(signal: UserSignal, closed: set[str], blocked: set[str]) -> None:
    """Fold a restrictive signal into the oracle's sets of businesses without marketing."""
    business = signal.business_id if signal.business_id is not None else ALL_BUSINESSES
    kind = signal.kind
    if (
        kind == SignalKind.OPT_OUT and signal.scope in (Scope.ALL, Scope.MARKETING)
    ) or kind == SignalKind.REPORT:
        closed.add(business)
    elif kind == SignalKind.BLOCK:
        blocked.add(business)
    elif kind == SignalKind.UNBLOCK:
        blocked.discard(business)  # the oracle assumes it applied; if stale, no harm
    elif kind == SignalKind.INBOUND_MESSAGE and signal.text in STOPS:
        closed.add(business)
        if signal.text in STOP_ALLS:
            closed.add(ALL_BUSINESSES)


# Caps, pair rate and quiet hours out of the way, so that every marketing message consent
# allows is delivered: the strongest test of consent (which holds under any policy).
OPEN = Policy(
    "open",
    marketing=MarketingCaps(
        per_user_24h=10**6, per_user_7d=10**6, per_business_24h=10**6, min_gap_ms=0,
        unengaged_per_7d=10**6,
    ),
    quiet_hours=QuietHours(start_minute=0, end_minute=0),
    pair_interval_ms=0,
)  # fmt: skip
_consent_steps = st.integers(0, 19).flatmap(
    lambda i: (
        _sends
        if i < 10
        else _restrictive
        if i < 14
        else _restoring
        if i < 16
        else _engagement
        if i < 18
        else _replays
    )
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_consent_steps, min_size=10, max_size=50), _timezones, st.sampled_from([OPEN, POLICY])
)
def test_no_marketing_after_an_opt_out_block_report_or_stop(
    steps: list[Step], timezone: str | None, policy: Policy
) -> None:
    """No marketing is delivered from a business the user opted out of, blocked, reported
    or told STOP (or from anyone after STOP ALL or a global opt-out), once it is consumed."""
    closed: dict[str, set[str]] = defaultdict(set)
    blocked: dict[str, set[str]] = defaultdict(set)
    states = {s: _state(timezone) for s in SUBSCRIBERS}
    now = T0
    for index, step in enumerate(steps):
        now += step.gap
        if isinstance(step, Signal):
            signal = UserSignal(
                step.subscriber, step.kind, now - step.lag, step.business, step.scope, step.text
            )
            states[step.subscriber] = apply_signal(states[step.subscriber], signal, policy)
            _forbidden(signal, closed[step.subscriber], blocked[step.subscriber])
            continue
        if not isinstance(step, Send):
            continue  # a replay may lawfully repeat a delivery decided before the signal
        candidate = _candidate(index, step)
        (decision,) = decide_batch([candidate], states, policy, now)
        if isinstance(decision, Deliver) and step.marketing:
            shut = closed[step.subscriber] | blocked[step.subscriber]
            assert step.business not in shut and ALL_BUSINESSES not in shut


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.one_of(_sends, _engagement, _restrictive), max_size=30),
    st.lists(st.one_of(_sends, _replays), max_size=30),
    st.lists(st.integers(0, 30), max_size=5),
    _timezones,
)
def test_batch_boundaries_do_not_change_results(
    history: list[Step], batch: list[Step], cuts: list[int], timezone: str | None
) -> None:
    """Deciding candidates in one decide_batch or cut into several gives the same result."""
    run = _run(history, timezone)
    now = T0 + sum(s.gap for s in history) + HOUR_MS
    earlier = [c for c, _, _ in run.decided]
    candidates = []
    for index, step in enumerate(batch):
        if isinstance(step, Replay):
            if earlier or candidates:
                pool = earlier + candidates
                candidates.append(pool[step.step % len(pool)])
        else:
            candidates.append(_candidate(1000 + index, step))
    whole_states = dict(run.states)
    whole = decide_batch(candidates, whole_states, POLICY, now)
    split_states = dict(run.states)
    split: list[Decision] = []
    bounds = [0, *sorted(min(c, len(candidates)) for c in cuts), len(candidates)]
    for start, end in itertools.pairwise(bounds):
        split += decide_batch(candidates[start:end], split_states, POLICY, now)
    assert split == whole
    assert split_states == whole_states

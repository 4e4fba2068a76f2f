"""Engagement signals: reads, "not interested" and inbound messages, in any arrival order."""

from __future__ import annotations

from functools import reduce
from types import MappingProxyType

from pipeline.domain.consent import apply_signal
from pipeline.domain.engagement import in_service_window, unengaged_basis
from pipeline.domain.models import (
    DAY_MS,
    HOUR_MS,
    MarketingSent,
    Policy,
    SignalKind,
    SubscriberState,
    UserSignal,
)

POLICY = Policy("engagement")
T0 = 1_714_564_800_000


def _signal(
    kind: SignalKind, at: int, business: str | None = "b1", text: str | None = None
) -> UserSignal:
    return UserSignal("s1", kind, at, business, text=text)


def _apply(state: SubscriberState, *signals: UserSignal) -> SubscriberState:
    return reduce(lambda s, sig: apply_signal(s, sig, POLICY), signals, state)


LEDGER = SubscriberState(
    marketing=(
        MarketingSent(T0, "b1", "m1", True),
        MarketingSent(T0 + HOUR_MS, "b2", "m2", True),
        MarketingSent(T0 + 2 * HOUR_MS, "b1", "m3", True),
    )
)


def test_read_marks_that_business_sends_up_to_its_time() -> None:
    """READ from b1 at T0 + 1 h marks b1's sends at or before then, nothing else."""
    state = _apply(LEDGER, _signal(SignalKind.READ, T0 + HOUR_MS))
    assert [m.read for m in state.marketing] == [True, False, False]


def test_read_without_business_marks_every_send_up_to_its_time() -> None:
    """A READ naming no business marks all sends at or before its time."""
    state = _apply(LEDGER, _signal(SignalKind.READ, T0 + HOUR_MS, business=None))
    assert [m.read for m in state.marketing] == [True, True, False]


def test_a_late_read_still_marks_what_it_covers() -> None:
    """Signals arrive out of order: a READ consumed after a newer one still applies."""
    state = _apply(
        LEDGER,
        _signal(SignalKind.READ, T0 + 2 * HOUR_MS, business="b2"),
        _signal(SignalKind.READ, T0, business="b1"),
    )
    assert [m.read for m in state.marketing] == [True, True, False]


def test_a_read_that_covers_nothing_returns_the_state_itself() -> None:
    """Nothing to mark, nothing copied."""
    assert apply_signal(LEDGER, _signal(SignalKind.READ, T0 - 1), POLICY) is LEDGER


def test_not_interested_keeps_the_latest_time() -> None:
    """NOT_INTERESTED records its time; an older one arriving later does not move it back."""
    state = _apply(
        SubscriberState(),
        _signal(SignalKind.NOT_INTERESTED, T0 + 5),
        _signal(SignalKind.NOT_INTERESTED, T0),
    )
    assert state.not_interested_at == T0 + 5
    assert unengaged_basis(state, POLICY, T0 + 29 * DAY_MS) == "user said not interested"
    assert unengaged_basis(state, POLICY, T0 + 5 + 30 * DAY_MS) is None


def test_an_inbound_message_opens_the_service_window() -> None:
    """Writing to a business opens its window for 24 h; other businesses are unaffected."""
    state = _apply(SubscriberState(), _signal(SignalKind.INBOUND_MESSAGE, T0, text="hi"))
    assert state.inbound_at == {"b1": T0}
    assert in_service_window(state, "b1", POLICY, T0 + DAY_MS - 1)
    assert not in_service_window(state, "b1", POLICY, T0 + DAY_MS)
    assert not in_service_window(state, "b2", POLICY, T0)


def test_an_inbound_stop_still_opens_the_window_and_opts_out() -> None:
    """A STOP is also a message to the business: both effects apply."""
    state = _apply(SubscriberState(), _signal(SignalKind.INBOUND_MESSAGE, T0, text="STOP"))
    assert state.inbound_at == {"b1": T0}
    assert state.consents["b1"].marketing is False


def test_inbound_times_never_move_back_and_old_ones_are_dropped() -> None:
    """The latest inbound per business wins; entries past the window are pruned on write."""
    state = _apply(
        SubscriberState(inbound_at=MappingProxyType({"old": T0 - 2 * DAY_MS})),
        _signal(SignalKind.INBOUND_MESSAGE, T0 + 10),
        _signal(SignalKind.INBOUND_MESSAGE, T0, business="b1"),
        _signal(SignalKind.INBOUND_MESSAGE, T0, business=None),
    )
    assert state.inbound_at == {"b1": T0 + 10}


def test_unengaged_needs_the_last_five_sent_unread() -> None:
    """Last five sent unread: unengaged; a read older than them does not help; held ones wait."""
    sends = tuple(MarketingSent(T0 + i * DAY_MS, f"b{i}", f"m{i}", True) for i in range(6))
    state = SubscriberState(marketing=sends)
    now = T0 + 5 * DAY_MS
    assert unengaged_basis(state, POLICY, now) == "user read none of the last 5 marketing messages"
    read = _apply(state, _signal(SignalKind.READ, T0, business="b0"))
    assert unengaged_basis(read, POLICY, now) == "user read none of the last 5 marketing messages"
    read = _apply(state, _signal(SignalKind.READ, now, business="b4"))
    assert unengaged_basis(read, POLICY, now) is None
    # Before the sixth is sent, b0's read message is among the last five that were sent.
    assert (
        unengaged_basis(_apply(state, _signal(SignalKind.READ, T0, "b0")), POLICY, now - 1) is None
    )

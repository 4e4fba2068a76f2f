"""Marketing caps over rolling windows of send times, the service window and engagement."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from types import MappingProxyType

import pytest

from pipeline.domain.caps import cap_verdict, judge_caps, record_marketing, window_peak
from pipeline.domain.decide import decide, remember
from pipeline.domain.models import (
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
    Deliver,
    EventKind,
    MarketingCaps,
    MarketingSent,
    Policy,
    QuietHours,
    Reason,
    Recipient,
    SubscriberState,
    Suppress,
    Template,
)

# No quiet hours here (start == end): these tests are about the caps alone.
POLICY = Policy("caps", quiet_hours=QuietHours(start_minute=0, end_minute=0))


def _utc(day: int, hour: int, minute: int = 0) -> int:
    """Epoch ms of 2024-05-<day> <hour>:<minute> UTC."""
    return int(datetime(2024, 5, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


def _sent(at: int, business: str = "b9", counted: bool = True, read: bool = False) -> MarketingSent:
    return MarketingSent(at, business, f"m-{business}-{at}", counted, read)


def _state(*sent: MarketingSent, **changes: object) -> SubscriberState:
    account = Account("6281234567890", AccountStatus.ACTIVE, "id", "ID", 0, "UTC", ("sale",))
    state = SubscriberState(
        account=account,
        consents=MappingProxyType({"*": Consent(True, True)}),
        marketing=tuple(sorted(sent, key=lambda m: m.at)),
    )
    return replace(state, **changes)  # type: ignore[arg-type]


def _promo(event_id: str = "p1", business: str = "b1") -> Candidate:
    event = BusinessEvent(
        event_id, business, EventKind.PROMOTION, 0, (), Template("sale", "en", (event_id,)),
        tags=("sale",),
    )  # fmt: skip
    return Candidate(event, Category.MARKETING, Recipient(0, "s1", "ID", ("UTC",)))


def _reason(state: SubscriberState, at: int, business: str = "b1") -> Reason | None:
    verdict = cap_verdict(state, business, at, POLICY, at)
    return None if verdict is None else verdict[0]


def test_two_sends_across_midnight_count_within_24_hours() -> None:
    """23:00 and 00:01 are two sends in one 24 h window, not one per calendar day."""
    state = _state(_sent(_utc(1, 23), "b2"), _sent(_utc(2, 0, 1), "b3"))
    verdict = cap_verdict(state, "b1", _utc(2, 10), POLICY, _utc(2, 10))
    assert verdict == (
        Reason.USER_CAP,
        "marketing cap 2 per 24 h reached: last two at 23:00 and 00:01 UTC",
    )


def test_exactly_24_hours_later_frees_the_slot() -> None:
    """A send exactly 24 h before is outside the window; a millisecond less is inside."""
    state = _state(_sent(_utc(1, 23), "b2"), _sent(_utc(2, 0, 1), "b3"))
    assert _reason(state, _utc(2, 23) - 1) == Reason.USER_CAP
    assert _reason(state, _utc(2, 23)) is None


def test_six_sends_in_seven_days_reach_the_weekly_cap() -> None:
    """Six counted sends within 7 days stop a seventh; exactly 7 days after the first frees it."""
    # Read, so that the user is engaged and the normal caps apply.
    state = _state(*(_sent(_utc(1 + d, 12), f"b{d + 2}", read=True) for d in range(6)))
    verdict = cap_verdict(state, "b1", _utc(7, 12), POLICY, _utc(7, 12))
    assert verdict is not None and verdict[0] == Reason.USER_CAP
    assert verdict[1] == (
        "marketing cap 6 per 7 d reached: 6 sent from May 01 12:00 to May 06 12:00 UTC"
    )
    assert _reason(state, _utc(8, 12)) is None


def test_one_per_business_per_24_hours() -> None:
    """A second message from the same business within 24 h is BUSINESS_USER_CAP."""
    state = _state(_sent(_utc(1, 10), "b1"))
    verdict = cap_verdict(state, "b1", _utc(2, 9), POLICY, _utc(2, 9))
    assert verdict == (
        Reason.BUSINESS_USER_CAP,
        "marketing cap 1 per 24 h from this business reached: last one at 10:00 UTC",
    )
    assert _reason(state, _utc(2, 10)) is None
    assert _reason(state, _utc(1, 12), business="b2") is None


def test_messages_from_one_business_are_at_least_four_hours_apart() -> None:
    """With room under the business cap, the 4 h gap still applies, before and after."""
    policy = replace(POLICY, marketing=MarketingCaps(per_business_24h=5, per_user_24h=5))
    state = _state(_sent(_utc(1, 10), "b1"))
    late = _utc(1, 14) - 1
    assert cap_verdict(state, "b1", late, policy, late) == (
        Reason.BUSINESS_USER_CAP,
        "marketing from this business at 10:00 UTC, less than 4 h apart",
    )
    assert cap_verdict(state, "b1", _utc(1, 14), policy, _utc(1, 14)) is None
    early = _utc(1, 6) + 1  # a held send at 10:00 is in the future of this one
    assert cap_verdict(state, "b1", early, policy, early) is not None
    assert cap_verdict(state, "b1", _utc(1, 6), policy, _utc(1, 6)) is None


def test_uncounted_sends_do_not_count() -> None:
    """Sends inside a customer-service window are not counted against any cap."""
    state = _state(_sent(_utc(1, 9), "b1", counted=False), _sent(_utc(1, 10), "b2", False))
    assert _reason(state, _utc(1, 11)) is None


def test_held_sends_in_the_future_close_windows_containing_now() -> None:
    """A send held until tomorrow morning counts in every 24 h window it shares with t."""
    t = _utc(2, 12)
    state = _state(_sent(t - 20 * HOUR_MS, "b2"), _sent(t + 3 * HOUR_MS, "b3"))
    # The window ending at t holds one send, but the one ending at t + 3 h holds both.
    assert window_peak([m.at for m in state.marketing], t, DAY_MS) == [
        t - 20 * HOUR_MS,
        t + 3 * HOUR_MS,
    ]
    assert _reason(state, t) == Reason.USER_CAP
    assert _reason(state, t - 20 * HOUR_MS - 30 * MINUTE_MS) == Reason.USER_CAP
    assert _reason(state, t - 21 * HOUR_MS) is None  # exactly 24 h before the held send
    assert _reason(_state(_sent(t + 3 * HOUR_MS, "b3")), t) is None


def _unengaged_history(read_one: bool = False) -> list[MarketingSent]:
    """Five sends older than 7 days (none read unless read_one) and one 2 days ago."""
    old = [_sent(_utc(1 + d, 12), f"b{d + 2}", read=read_one and d == 4) for d in range(5)]
    return [*old, _sent(_utc(13, 12), "b8")]


def test_a_user_who_read_none_of_the_last_five_drops_to_one_per_week() -> None:
    """Unread last five marketing messages: a second send within 7 days is USER_CAP."""
    now = _utc(15, 12)
    verdict = cap_verdict(_state(*_unengaged_history()), "b1", now, POLICY, now)
    assert verdict is not None and verdict[0] == Reason.USER_CAP
    assert verdict[1].startswith("user read none of the last 5 marketing messages, so ")


def test_reading_one_of_the_last_five_keeps_the_normal_caps() -> None:
    """One read message among the last five means the user is engaged."""
    now = _utc(15, 12)
    assert _reason(_state(*_unengaged_history(read_one=True)), now) is None


def test_unengaged_needs_a_history_of_five() -> None:
    """Four unread messages are not enough history to call a user unengaged."""
    now = _utc(15, 12)
    assert _reason(_state(*_unengaged_history()[2:]), now) is None


def test_unengaged_user_may_still_get_one_per_week() -> None:
    """The lowered cap is one per 7 days, not none."""
    now = _utc(15, 12)
    history = _unengaged_history()[:-1]
    assert _reason(_state(*history), now) is None


def test_not_interested_drops_the_cap_for_thirty_days() -> None:
    """After NOT_INTERESTED one send per 7 days, until 30 days have passed."""
    now = _utc(15, 12)
    recent = _sent(_utc(13, 12), "b8")
    said = _state(recent, not_interested_at=now - 29 * DAY_MS)
    verdict = cap_verdict(said, "b1", now, POLICY, now)
    assert verdict is not None and verdict[1].startswith("user said not interested, so ")
    assert _reason(_state(recent, not_interested_at=now - 30 * DAY_MS), now) is None


def test_judge_caps_describes_what_a_delivery_uses() -> None:
    """An allowed send reports the counts it brings the windows to, itself included."""
    now = _utc(10, 12)
    state = _state(_sent(now - 5 * HOUR_MS, "b2"), _sent(now - 3 * DAY_MS, "b3"))
    assert judge_caps(state, "b1", now, POLICY, now) == (
        None,
        "marketing 2 of 2 per 24 h, 3 of 6 per 7 d",
    )


def test_service_window_exempts_from_caps_and_is_not_counted() -> None:
    """Marketing < 24 h after the user wrote to the business goes out, uncounted."""
    now = _utc(2, 12)
    full = _state(
        _sent(now - 2 * HOUR_MS, "b2"),
        _sent(now - HOUR_MS, "b3"),
        inbound_at=MappingProxyType({"b1": now - DAY_MS + 1}),
    )
    decision = decide(_promo(), full, POLICY, now)
    assert isinstance(decision, Deliver)
    assert decision.detail.endswith("not counted against caps")
    after = remember(full, _promo(), decision, now, POLICY)
    assert [(m.business_id, m.counted) for m in after.marketing][-1] == ("b1", False)
    closed = replace(full, inbound_at=MappingProxyType({"b1": now - DAY_MS}))
    refused = decide(_promo(), closed, POLICY, now)
    assert isinstance(refused, Suppress) and refused.reason == Reason.USER_CAP


def test_a_counted_delivery_is_recorded_at_its_send_time() -> None:
    """remember appends a counted MarketingSent at the decision time (or deliver_after)."""
    now = _utc(2, 12)
    state = _state()
    decision = decide(_promo(), state, POLICY, now)
    after = remember(state, _promo(), decision, now, POLICY)
    assert after.marketing == (MarketingSent(now, "b1", decision.message_id, True),)
    held = replace(decision, deliver_after=now + 5 * HOUR_MS)
    assert remember(state, _promo(), held, now, POLICY).marketing[0].at == now + 5 * HOUR_MS


def test_decide_enforces_caps_across_a_day_of_attempts() -> None:
    """Hourly promotions from several businesses: exactly two go out in 24 h."""
    start = _utc(3, 0)
    states = {"s1": _state()}
    delivered = []
    for hour in range(24):
        now = start + hour * HOUR_MS
        candidate = _promo(f"p{hour}", f"b{hour % 5}")
        decision = decide(candidate, states["s1"], POLICY, now)
        states["s1"] = remember(states["s1"], candidate, decision, now, POLICY)
        if isinstance(decision, Deliver):
            delivered.append(hour)
    assert delivered == [0, 1]


@pytest.mark.parametrize("count", [0, 1, 2, 3, 5, 8])
def test_the_ledger_keeps_seven_days_and_at_least_the_last_five(count: int) -> None:
    """Pruning drops sends older than 7 days, but never below the last unengaged_after."""
    now = _utc(20, 12)
    old = [_sent(now - WEEK_MS - (count - i) * HOUR_MS, f"b{i}") for i in range(count)]
    recent = [_sent(now - 10 * MINUTE_MS * (3 - i), f"r{i}") for i in range(3)]
    ledger = record_marketing(tuple(old + recent), None, POLICY, now)
    assert ledger[-3:] == tuple(recent)
    assert len(ledger) == max(3, min(count + 3, 5))


def test_the_ledger_stays_sorted_by_send_time() -> None:
    """A send earlier than the last recorded one (a held send before it) is inserted in order."""
    now = _utc(20, 12)
    ledger = record_marketing((_sent(now + 5 * HOUR_MS),), _sent(now, "b2"), POLICY, now)
    assert [m.at for m in ledger] == [now, now + 5 * HOUR_MS]

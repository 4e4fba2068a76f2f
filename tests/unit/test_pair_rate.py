"""Pair rate: at most one message per 6 s from one business to one user."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from pipeline.domain.decide import decide, remember
from pipeline.domain.models import (
    DAY_MS,
    HOUR_MS,
    Account,
    AccountStatus,
    BusinessEvent,
    Candidate,
    Category,
    Consent,
    Decision,
    Deliver,
    EventKind,
    Policy,
    Reason,
    Recipient,
    SubscriberState,
    Suppress,
    Template,
)
from pipeline.domain.pair_rate import pair_rate_verdict, record_send

POLICY = Policy("pair")
T0 = 1_714_564_800_000  # 2024-05-01 12:00 UTC, 19:00 in Jakarta
STATE = SubscriberState(
    account=Account("x", AccountStatus.ACTIVE, "en", "ID", 0, None, ("sale",)),
    consents=MappingProxyType({"*": Consent(True, True)}),
)


def _candidate(
    event_id: str, kind: EventKind = EventKind.SHIPMENT_UPDATE, business: str = "b1"
) -> Candidate:
    event = BusinessEvent(
        event_id, business, kind, T0, (), Template("t", "en", (event_id,)), tags=("sale",)
    )
    category = Category.MARKETING if kind == EventKind.PROMOTION else Category.UTILITY
    if kind == EventKind.ONE_TIME_PASSCODE:
        category = Category.AUTHENTICATION
    return Candidate(event, category, Recipient(0, "s1", "ID", ("Asia/Jakarta",)))


def _run(*steps: tuple[Candidate, int], state: SubscriberState = STATE) -> list[Decision]:
    decisions = []
    for candidate, at in steps:
        decision = decide(candidate, state, POLICY, at)
        state = remember(state, candidate, decision, at, POLICY)
        decisions.append(decision)
    return decisions


def test_a_second_message_within_six_seconds_is_suppressed() -> None:
    """5.999 s after a delivery from the same business: PAIR_RATE; 6 s after: delivered."""
    first, second, third = _run(
        (_candidate("e1"), T0), (_candidate("e2"), T0 + 5_999), (_candidate("e3"), T0 + 6_000)
    )
    assert isinstance(first, Deliver) and isinstance(third, Deliver)
    assert isinstance(second, Suppress)
    assert (second.reason, second.rule) == (Reason.PAIR_RATE, "pair_rate")
    assert second.detail == (
        "another message from this business 5 s before this one (at most 1 per 6 s)"
    )


def test_another_business_is_not_limited() -> None:
    """The pair is (business, user): another business may message at once."""
    _, other = _run((_candidate("e1"), T0), (_candidate("e2", business="b2"), T0 + 1))
    assert isinstance(other, Deliver)


@pytest.mark.parametrize(
    "kind", [EventKind.GATE_CHANGE, EventKind.FLIGHT_CANCELLATION, EventKind.ONE_TIME_PASSCODE]
)
def test_urgent_utility_is_excepted(kind: EventKind) -> None:
    """Urgent utility and passcodes go out even right after another message."""
    _, urgent = _run((_candidate("e1"), T0), (_candidate("e2", kind), T0 + 1))
    assert isinstance(urgent, Deliver)


def test_urgent_messages_still_count_for_later_ones() -> None:
    """A normal message right after an urgent one waits its turn."""
    _, later = _run((_candidate("e1", EventKind.GATE_CHANGE), T0), (_candidate("e2"), T0 + 1_000))
    assert isinstance(later, Suppress) and later.reason == Reason.PAIR_RATE


def test_marketing_is_never_urgent() -> None:
    """A promotion right after a utility message from the same business is PAIR_RATE."""
    _, promo = _run((_candidate("e1"), T0), (_candidate("p1", EventKind.PROMOTION), T0 + 1))
    assert isinstance(promo, Suppress) and promo.reason == Reason.PAIR_RATE


def test_held_marketing_is_checked_at_its_send_time() -> None:
    """Two promotions held until the same morning would arrive together: the second waits."""
    night = T0 + 3 * HOUR_MS  # 22:00 in Jakarta
    inbound = MappingProxyType({"b1": night - HOUR_MS})  # service window: caps do not apply
    state = SubscriberState(STATE.account, STATE.consents, inbound_at=inbound)
    first, second = _run(
        (_candidate("p1", EventKind.PROMOTION), night),
        (_candidate("p2", EventKind.PROMOTION), night + HOUR_MS),
        state=state,
    )
    assert isinstance(first, Deliver) and first.deliver_after is not None
    assert isinstance(second, Suppress) and second.reason == Reason.PAIR_RATE
    assert second.detail.startswith("another message from this business 0 s before")


def test_a_held_message_does_not_block_one_sent_now() -> None:
    """Marketing held until morning does not count against a utility message tonight."""
    night = T0 + 3 * HOUR_MS
    held, now = _run((_candidate("p1", EventKind.PROMOTION), night), (_candidate("e1"), night + 1))
    assert isinstance(held, Deliver) and held.deliver_after is not None
    assert isinstance(now, Deliver)


def test_last_sent_keeps_the_latest_time_for_a_day() -> None:
    """record_send keeps the latest send per business and forgets it after a day."""
    sent = record_send(MappingProxyType({}), "b1", T0, T0)
    assert record_send(sent, "b1", T0 - 5, T0) == {"b1": T0}
    assert record_send(sent, None, 0, T0 + DAY_MS - 1) == {"b1": T0}
    assert record_send(sent, None, 0, T0 + DAY_MS) == {}
    state = SubscriberState(last_sent=sent)
    assert pair_rate_verdict(state, "b1", T0 - 5_999, POLICY) is not None
    assert pair_rate_verdict(state, "b1", T0 - 6_000, POLICY) is None

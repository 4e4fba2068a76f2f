"""Business messaging limits: unique users per business per rolling window, by tier."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from pipeline.domain.business_limit import (
    BusinessWindow,
    admit,
    limit_detail,
    suppress_limited,
    tier_limit,
)
from pipeline.domain.decide import decide, remember
from pipeline.domain.keys import message_id
from pipeline.domain.models import (
    DAY_MS,
    HOUR_MS,
    Account,
    AccountStatus,
    BusinessEvent,
    BusinessProfile,
    Candidate,
    Category,
    Consent,
    Deliver,
    EventKind,
    Policy,
    Reason,
    Recipient,
    SubscriberState,
    Suppress,
    Template,
)

T0 = 1_714_564_800_000
POLICY = Policy("limits", tier_limits=MappingProxyType({"SMALL": 3, "TIER_1": 2, "OPEN": None}))


def _users(*numbers: int) -> list[str]:
    return [f"s{n}" for n in numbers]


@pytest.mark.parametrize(
    ("tier", "limit"),
    [
        ("TIER_1", 250),
        ("TIER_2", 2_000),
        ("TIER_3", 10_000),
        ("TIER_4", 100_000),
        ("UNLIMITED", None),
    ],
)
def test_default_tiers(tier: str, limit: int | None) -> None:
    """The default policy's tiers allow 250, 2,000, 10k, 100k and unlimited users."""
    assert tier_limit(BusinessProfile("b", tier), Policy("p")) == (tier, limit)


def test_a_business_without_profile_or_with_an_unknown_tier_gets_the_default() -> None:
    """No profile: the default tier; an unknown tier name: the default tier's limit."""
    assert tier_limit(None, Policy("p")) == ("TIER_1", 250)
    assert tier_limit(BusinessProfile("b", "TIER_9"), Policy("p")) == ("TIER_9", 250)


def test_new_users_are_admitted_until_the_limit() -> None:
    """With a limit of 3, the first three distinct users are admitted, the rest limited."""
    admitted, limited, window = admit(
        BusinessWindow(), BusinessProfile("b", "SMALL"), _users(1, 2, 3, 4, 5), POLICY, T0
    )
    assert admitted == frozenset(_users(1, 2, 3))
    assert limited == frozenset(_users(4, 5))
    assert dict(window.reached) == {"s1": T0, "s2": T0, "s3": T0}


def test_users_already_reached_are_free() -> None:
    """A full window still admits the users in it, again and again."""
    small = BusinessProfile("b", "SMALL")
    _, _, window = admit(BusinessWindow(), small, _users(1, 2, 3), POLICY, T0)
    admitted, limited, after = admit(window, small, _users(3, 1, 9), POLICY, T0 + HOUR_MS)
    assert admitted == frozenset(_users(3, 1)) and limited == frozenset(_users(9))
    assert after is window  # nothing new, nothing expired: the same window


def test_the_window_rolls() -> None:
    """A user counts for business_window_ms from the first message, then frees the slot."""
    small = BusinessProfile("b", "SMALL")
    _, _, window = admit(BusinessWindow(), small, _users(1), POLICY, T0)
    _, _, window = admit(window, small, _users(2, 3), POLICY, T0 + 12 * HOUR_MS)
    # s1 was reached again 20 h in: still counted from its first message at T0.
    _, limited, window = admit(window, small, _users(1, 4), POLICY, T0 + 20 * HOUR_MS)
    assert limited == frozenset(_users(4))
    admitted, limited, window = admit(window, small, _users(4), POLICY, T0 + DAY_MS)
    assert admitted == frozenset(_users(4)) and not limited
    assert dict(window.reached) == {
        "s2": T0 + 12 * HOUR_MS,
        "s3": T0 + 12 * HOUR_MS,
        "s4": T0 + DAY_MS,
    }


def test_a_user_listed_twice_counts_once() -> None:
    """Repeated subscribers in one call take one slot."""
    admitted, limited, window = admit(
        BusinessWindow(), BusinessProfile("b", "TIER_1"), _users(1, 1, 2, 2, 3), POLICY, T0
    )
    assert admitted == frozenset(_users(1, 2)) and limited == frozenset(_users(3))
    assert len(window.reached) == 2


def test_unlimited_tiers_track_nothing() -> None:
    """An unlimited tier admits everyone and keeps an empty window."""
    admitted, limited, window = admit(
        BusinessWindow(MappingProxyType({"s0": T0})), BusinessProfile("b", "OPEN"),
        _users(*range(1000)), POLICY, T0,
    )  # fmt: skip
    assert len(admitted) == 1000 and not limited and window.reached == {}


def test_admit_does_not_change_the_given_window() -> None:
    """The window is a value: admit returns a new one."""
    window = BusinessWindow()
    admit(window, None, _users(1), POLICY, T0)
    assert window.reached == {}


def test_limit_detail_and_suppression() -> None:
    """A limited recipient is suppressed BUSINESS_LIMIT, naming the tier and the limit."""
    business = BusinessProfile("b1", "SMALL")
    assert limit_detail(business, POLICY) == (
        "business tier SMALL reached its limit of 3 unique users per 24 h"
    )
    event = BusinessEvent("e1", "b1", EventKind.PROMOTION, T0, (), Template("t", "en"))
    suppression = suppress_limited(event, Recipient(2, "s9", "ID"), business, POLICY, T0)
    assert (suppression.message_id, suppression.reason, suppression.rule) == (
        message_id("e1", "s9"), Reason.BUSINESS_LIMIT, "business_limit",
    )  # fmt: skip
    assert (suppression.decided_at, suppression.policy_version) == (T0, "limits")


def _limited_candidate(event_id: str = "e1") -> Candidate:
    event = BusinessEvent(event_id, "b1", EventKind.SHIPMENT_UPDATE, T0, (), Template("t", "en"))
    return Candidate(event, Category.UTILITY, Recipient(0, "s1", "ID"), limited=True)


OPTED_IN = SubscriberState(
    account=Account("x", AccountStatus.ACTIVE, "en", "ID", 0, "UTC"),
    consents=MappingProxyType({"b1": Consent(True, True)}),
)


def test_decide_suppresses_a_limited_candidate() -> None:
    """A candidate marked limited at ingest is BUSINESS_LIMIT, before any other rule."""
    decision = decide(_limited_candidate(), SubscriberState(), POLICY, T0)
    assert decision == Suppress(
        message_id("e1", "s1"), Reason.BUSINESS_LIMIT, "business_limit",
        "business tier TIER_1 reached its limit of 2 unique users per 24 h", T0, "limits",
    )  # fmt: skip


def test_a_replay_keeps_the_outcome_decided_before_the_limit() -> None:
    """An event delivered before, replayed after the window filled, stays delivered."""
    first = replace(_limited_candidate(), limited=False)
    delivered = decide(first, OPTED_IN, POLICY, T0)
    assert isinstance(delivered, Deliver)
    state = remember(OPTED_IN, first, delivered, T0, POLICY)
    assert decide(_limited_candidate(), state, POLICY, T0 + HOUR_MS) == delivered

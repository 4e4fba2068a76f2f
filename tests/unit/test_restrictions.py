"""Platform restrictions: suspended businesses and countries closed to marketing."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from pipeline.domain.decide import decide
from pipeline.domain.models import (
    Account,
    AccountStatus,
    BusinessEvent,
    BusinessProfile,
    BusinessStatus,
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
from pipeline.domain.restrictions import country_verdict, suspension_verdict

SUSPENDED = BusinessProfile("b1", "TIER_2", True, BusinessStatus.SUSPENDED, 5)
POLICY = Policy("r", businesses=MappingProxyType({"b1": SUSPENDED}))
STATE = SubscriberState(
    account=Account("x", AccountStatus.ACTIVE, "en", "ID", 0, "UTC", ("sale",)),
    consents=MappingProxyType({"*": Consent(True, True)}),
)
NOON = 1_714_564_800_000  # 2024-05-01 12:00 UTC


def _candidate(
    kind: EventKind = EventKind.SHIPMENT_UPDATE, business: str = "b1", region: str = "ID"
) -> Candidate:
    event = BusinessEvent("e1", business, kind, 0, (), Template("t", "en", ("x",)), tags=("sale",))
    category = {
        EventKind.PROMOTION: Category.MARKETING,
        EventKind.ONE_TIME_PASSCODE: Category.AUTHENTICATION,
    }.get(kind, Category.UTILITY)
    return Candidate(event, category, Recipient(0, "s1", region))


@pytest.mark.parametrize(
    "kind", [EventKind.PROMOTION, EventKind.SHIPMENT_UPDATE, EventKind.ONE_TIME_PASSCODE]
)
def test_a_suspended_business_sends_nothing(kind: EventKind) -> None:
    """Every category from a suspended business is BUSINESS_SUSPENDED, under rule business."""
    decision = decide(_candidate(kind), STATE, POLICY, NOON)
    assert isinstance(decision, Suppress)
    assert (decision.reason, decision.rule) == (Reason.BUSINESS_SUSPENDED, "business")
    assert decision.detail == "business suspended by the platform"


def test_suspension_comes_before_expiry_and_consent() -> None:
    """A suspended business's expired event to a user without consent is still SUSPENDED."""
    event = replace(_candidate().event, expires_at=NOON - 1)
    candidate = replace(_candidate(), event=event)
    decision = decide(candidate, replace(STATE, consents=MappingProxyType({})), POLICY, NOON)
    assert isinstance(decision, Suppress) and decision.reason == Reason.BUSINESS_SUSPENDED


def test_active_and_unknown_businesses_are_not_suspended() -> None:
    """Only status SUSPENDED suspends; a business without a profile is fine."""
    active = replace(SUSPENDED, status=BusinessStatus.ACTIVE)
    assert (
        suspension_verdict("b1", Policy("p", businesses=MappingProxyType({"b1": active}))) is None
    )
    assert suspension_verdict("b2", POLICY) is None
    assert isinstance(decide(_candidate(business="b2"), STATE, POLICY, NOON), Deliver)


@pytest.mark.parametrize("region", ["US", "CA", "PR", "JM"])
def test_marketing_to_plus_one_numbers_is_restricted_by_default(region: str) -> None:
    """The default policy restricts marketing to every region of calling code +1."""
    decision = decide(_candidate(EventKind.PROMOTION, "b2", region), STATE, Policy("p"), NOON)
    assert isinstance(decision, Suppress)
    assert (decision.reason, decision.rule) == (Reason.COUNTRY_RESTRICTED, "country")
    assert decision.detail == f"marketing to numbers of region {region} is restricted by policy"


def test_utility_to_restricted_regions_is_allowed() -> None:
    """The restriction is on marketing only."""
    decision = decide(_candidate(EventKind.SHIPMENT_UPDATE, "b2", "US"), STATE, Policy("p"), NOON)
    assert isinstance(decision, Deliver)


def test_the_restricted_regions_come_from_the_policy() -> None:
    """A policy without restrictions lets +1 marketing through; one listing ID stops it."""
    open_policy = Policy("p", restricted_marketing_regions=frozenset())
    assert country_verdict(Category.MARKETING, Recipient(0, "s", "US"), open_policy) is None
    closed = Policy("p", restricted_marketing_regions=frozenset({"ID"}))
    verdict = country_verdict(Category.MARKETING, Recipient(0, "s", "ID"), closed)
    assert verdict is not None and verdict[0] == Reason.COUNTRY_RESTRICTED

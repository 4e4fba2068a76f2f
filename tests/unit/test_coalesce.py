"""Entity updates: never an older status after a newer one, and no flight-delay cascades."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType

import pytest

from pipeline.domain.coalesce import entity_key, record_entity
from pipeline.domain.decide import decide, remember
from pipeline.domain.models import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    Account,
    AccountStatus,
    BusinessEvent,
    Candidate,
    Category,
    Consent,
    Decision,
    Deliver,
    EntityMemory,
    EventKind,
    Policy,
    Reason,
    Recipient,
    SubscriberState,
    Suppress,
    Template,
)

POLICY = Policy("coalesce")
T0 = 1_714_564_800_000  # 2024-05-01 12:00 UTC
STATE = SubscriberState(
    account=Account("x", AccountStatus.ACTIVE, "en", "ID", 0, "UTC"),
    consents=MappingProxyType({"air": Consent(True, True)}),
)


def _flight(
    event_id: str,
    version: int,
    kind: EventKind = EventKind.FLIGHT_DELAY,
    **payload: object,
) -> Candidate:
    event = BusinessEvent(
        event_id, "air", kind, T0, (), Template("delay", "en", (event_id,)),
        entity_id="GA404-0501", entity_version=version,
        payload=MappingProxyType({"flight": "GA404", **payload}),
    )  # fmt: skip
    return Candidate(event, Category.UTILITY, Recipient(0, "s1", "ID"))


class Feed:
    """Decide candidates for one subscriber in order, remembering each outcome."""

    def __init__(self, state: SubscriberState = STATE) -> None:
        self.state = state

    def send(self, candidate: Candidate, at: int) -> Decision:
        decision = decide(candidate, self.state, POLICY, at)
        self.state = remember(self.state, candidate, decision, at, POLICY)
        return decision


def _reason(decision: Decision) -> Reason | None:
    return decision.reason if isinstance(decision, Suppress) else None


def test_an_older_version_after_a_newer_one_is_superseded() -> None:
    """Version 4 after version 5 was delivered is SUPERSEDED; version 6 is delivered."""
    feed = Feed()
    assert isinstance(feed.send(_flight("e5", 5, delay_minutes=60), T0), Deliver)
    old = feed.send(_flight("e4", 4, delay_minutes=30), T0 + HOUR_MS)
    assert isinstance(old, Suppress)
    assert (old.reason, old.rule) == (Reason.SUPERSEDED, "superseded")
    assert old.detail == "version 4 of this update is older than version 5, already delivered"
    assert "GA404" not in old.detail
    assert isinstance(feed.send(_flight("e6", 6, delay_minutes=120), T0 + 2 * HOUR_MS), Deliver)


def test_only_delivered_versions_supersede() -> None:
    """A newer version suppressed (no consent yet) does not block an older one later."""
    feed = Feed(replace(STATE, consents=MappingProxyType({})))
    assert _reason(feed.send(_flight("e5", 5), T0)) == Reason.NO_CONSENT
    feed.state = replace(feed.state, consents=STATE.consents)
    assert isinstance(feed.send(_flight("e4", 4), T0 + HOUR_MS), Deliver)


def test_other_entities_and_businesses_are_independent() -> None:
    """Versions are per business and entity."""
    feed = Feed(replace(STATE, consents=MappingProxyType({"*": Consent(True, True)})))
    feed.send(_flight("e5", 5), T0)
    other_flight = _flight("x1", 1)
    other_flight = replace(other_flight, event=replace(other_flight.event, entity_id="GA405"))
    assert isinstance(feed.send(other_flight, T0 + HOUR_MS), Deliver)
    other_airline = _flight("y1", 1)
    other_airline = replace(other_airline, event=replace(other_airline.event, business_id="air2"))
    assert isinstance(feed.send(other_airline, T0 + 2 * HOUR_MS), Deliver)


@pytest.mark.parametrize(
    ("after", "payload", "reason"),
    [
        (10 * MINUTE_MS, {"delay_minutes": 70, "gate": "A1"}, Reason.COALESCED),
        (29 * MINUTE_MS, {"delay_minutes": 89, "gate": "A1"}, Reason.COALESCED),
        (29 * MINUTE_MS, {"delay_minutes": 31, "gate": "A1"}, Reason.COALESCED),
        (10 * MINUTE_MS, {"delay_minutes": 90, "gate": "A1"}, None),  # moved by 30 min
        (10 * MINUTE_MS, {"delay_minutes": 30, "gate": "A1"}, None),  # moved back by 30
        (10 * MINUTE_MS, {"delay_minutes": 70, "gate": "B7"}, None),  # gate changed
        (10 * MINUTE_MS, {"delay_minutes": 70}, Reason.COALESCED),  # gate not said
        (30 * MINUTE_MS, {"delay_minutes": 70, "gate": "A1"}, None),  # interval passed
    ],
)
def test_flight_delay_updates_coalesce(
    after: int, payload: Mapping[str, object], reason: Reason | None
) -> None:
    """At most one delay update per 30 min unless the delay moves >= 30 min or the gate changes."""
    feed = Feed()
    feed.send(_flight("e1", 1, delay_minutes=60, gate="A1"), T0)
    assert _reason(feed.send(_flight("e2", 2, **payload), T0 + after)) == reason


def test_a_coalesced_update_says_why() -> None:
    """The detail gives the time since the last delivery, the delay change and the rule."""
    feed = Feed()
    feed.send(_flight("e1", 1, delay_minutes=60, gate="A1"), T0)
    decision = feed.send(_flight("e2", 2, delay_minutes=75, gate="A1"), T0 + 12 * MINUTE_MS)
    assert isinstance(decision, Suppress) and decision.rule == "coalescing"
    assert decision.detail == (
        "flight delay update 12 min after the last one delivered (delay 60 -> 75 min, same "
        "gate): at most one per 30 min unless the delay moves >= 30 min, the gate changes or "
        "the flight is cancelled"
    )


def test_the_comparison_is_with_the_last_delivered_delay() -> None:
    """Coalesced updates do not move the baseline: 60, 75 (coalesced), 90 is delivered."""
    feed = Feed()
    feed.send(_flight("e1", 1, delay_minutes=60), T0)
    assert _reason(feed.send(_flight("e2", 2, delay_minutes=75), T0 + 5 * MINUTE_MS))
    assert isinstance(feed.send(_flight("e3", 3, delay_minutes=90), T0 + 10 * MINUTE_MS), Deliver)
    assert _reason(feed.send(_flight("e4", 4, delay_minutes=100), T0 + 15 * MINUTE_MS))


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        (EventKind.FLIGHT_CANCELLATION, {"reason": "weather"}),
        (EventKind.GATE_CHANGE, {"new_gate": "A1", "old_gate": "A1", "departure": T0}),
    ],
)
def test_cancellations_and_gate_changes_always_pass(
    kind: EventKind, payload: Mapping[str, object]
) -> None:
    """A cancellation or gate change a minute after a delay update is delivered."""
    feed = Feed()
    feed.send(_flight("e1", 1, delay_minutes=60, gate="A1"), T0)
    assert isinstance(feed.send(_flight("e2", 2, kind, **payload), T0 + MINUTE_MS), Deliver)


def test_a_delay_after_a_gate_change_compares_with_the_delivered_gate() -> None:
    """A gate change delivered becomes the gate a later delay update is compared with."""
    feed = Feed()
    feed.send(_flight("e1", 1, delay_minutes=60, gate="A1"), T0)
    feed.send(_flight("e2", 2, EventKind.GATE_CHANGE, new_gate="C3"), T0 + MINUTE_MS)
    assert feed.state.entities["air/GA404-0501"].gate == "C3"
    assert feed.state.entities["air/GA404-0501"].delay_minutes == 60
    same = feed.send(_flight("e3", 3, delay_minutes=65, gate="C3"), T0 + 2 * MINUTE_MS)
    assert _reason(same) == Reason.COALESCED


def test_a_first_delay_after_other_news_is_not_coalesced() -> None:
    """With no delay delivered yet, a delay update is news, however soon."""
    feed = Feed()
    feed.send(_flight("e1", 1, EventKind.GATE_CHANGE, new_gate="C3"), T0)
    assert isinstance(feed.send(_flight("e2", 2, delay_minutes=20), T0 + MINUTE_MS), Deliver)


def test_entity_memory_records_the_delivery_and_expires() -> None:
    """remember keeps version, times, delay, gate and cancellation; pruned after 7 days."""
    feed = Feed()
    feed.send(_flight("e1", 3, delay_minutes=60, gate="A1"), T0)
    feed.send(_flight("e2", 4, EventKind.FLIGHT_CANCELLATION), T0 + HOUR_MS)
    assert feed.state.entities == {
        "air/GA404-0501": EntityMemory(4, T0 + HOUR_MS, T0 + HOUR_MS, 60, "A1", True)
    }
    kept = record_entity(feed.state.entities, None, 0, POLICY, T0 + HOUR_MS + 7 * DAY_MS - 1)
    assert kept == feed.state.entities
    assert record_entity(feed.state.entities, None, 0, POLICY, T0 + HOUR_MS + 7 * DAY_MS) == {}


def test_entity_key_needs_an_entity() -> None:
    """Events without entity_id have no memory key; keys are business/entity."""
    assert entity_key(_flight("e1", 1).event) == "air/GA404-0501"
    assert entity_key(replace(_flight("e1", 1).event, entity_id=None)) is None


def test_a_delivery_still_held_does_not_coalesce() -> None:
    """Marketing about the flight held until morning has told the user nothing yet."""
    held = EntityMemory(1, T0, T0 + 10 * HOUR_MS, 60, "A1", False)
    state = replace(STATE, entities=MappingProxyType({"air/GA404-0501": held}))
    decision = decide(_flight("e2", 2, delay_minutes=65, gate="A1"), state, POLICY, T0)
    assert isinstance(decision, Deliver)

"""Category and priority derived from the event itself."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType

import pytest

from pipeline.domain.category import URGENT_DEPARTURE_MS, derive_category, priority
from pipeline.domain.models import (
    HOUR_MS,
    BusinessEvent,
    Category,
    EventKind,
    Offer,
    Priority,
    Template,
)

NOW = 1_700_000_000_000


def _event(
    kind: EventKind, *, offer: Offer | None = None, payload: Mapping[str, object] | None = None
) -> BusinessEvent:
    return BusinessEvent(
        event_id="e1",
        business_id="b1",
        kind=kind,
        occurred_at=NOW,
        recipients=("+34612345678",),
        template=Template("t", "en"),
        offer=offer,
        payload=MappingProxyType(dict(payload or {})),
    )


@pytest.mark.parametrize(
    ("kind", "category"),
    [
        (EventKind.PROMOTION, Category.MARKETING),
        (EventKind.ONE_TIME_PASSCODE, Category.AUTHENTICATION),
        (EventKind.FLIGHT_DELAY, Category.UTILITY),
        (EventKind.FLIGHT_CANCELLATION, Category.UTILITY),
        (EventKind.GATE_CHANGE, Category.UTILITY),
        (EventKind.SHIPMENT_UPDATE, Category.UTILITY),
        (EventKind.DELIVERY_UPDATE, Category.UTILITY),
        (EventKind.SERVICE_UPDATE, Category.UTILITY),
    ],
)
def test_category_follows_the_kind(kind: EventKind, category: Category) -> None:
    """Each kind has its category when no promotional content is attached."""
    assert derive_category(_event(kind)) == category


@pytest.mark.parametrize("kind", list(EventKind))
def test_an_offer_makes_any_event_marketing(kind: EventKind) -> None:
    """Promotional content is MARKETING whatever kind the business declared."""
    assert derive_category(_event(kind, offer=Offer("10% off"))) == Category.MARKETING


@pytest.mark.parametrize(
    "kind", [EventKind.FLIGHT_CANCELLATION, EventKind.GATE_CHANGE, EventKind.ONE_TIME_PASSCODE]
)
def test_always_urgent_kinds(kind: EventKind) -> None:
    """Cancellations, gate changes and passcodes are urgent."""
    event = _event(kind)
    assert priority(event, derive_category(event), NOW) == Priority.URGENT


@pytest.mark.parametrize(
    ("departure", "expected"),
    [
        (NOW + HOUR_MS, Priority.URGENT),
        (NOW + URGENT_DEPARTURE_MS, Priority.URGENT),
        (NOW + URGENT_DEPARTURE_MS + 1, Priority.NORMAL),
        (NOW - HOUR_MS, Priority.URGENT),
        (None, Priority.NORMAL),
        ("tomorrow", Priority.NORMAL),
        (True, Priority.NORMAL),
    ],
)
def test_flight_delay_is_urgent_when_departure_is_within_12_hours(
    departure: object, expected: Priority
) -> None:
    """A delay is urgent only if the new departure is at most 12 h away."""
    event = _event(EventKind.FLIGHT_DELAY, payload={"flight": "GA1", "new_departure": departure})
    assert priority(event, Category.UTILITY, NOW) == expected


def test_flight_delay_departure_may_be_a_datetime() -> None:
    """A timestamp decoded as an aware datetime counts like its millis."""
    soon = datetime.fromtimestamp((NOW + HOUR_MS) / 1000, tz=UTC)
    later = datetime.fromtimestamp((NOW + 2 * URGENT_DEPARTURE_MS) / 1000, tz=UTC)
    soon_event = _event(EventKind.FLIGHT_DELAY, payload={"new_departure": soon})
    later_event = _event(EventKind.FLIGHT_DELAY, payload={"new_departure": later})
    assert priority(soon_event, Category.UTILITY, NOW) == Priority.URGENT
    assert priority(later_event, Category.UTILITY, NOW) == Priority.NORMAL


def test_flight_delay_ignores_the_type_marker() -> None:
    """The optional __type__ key in the payload changes nothing."""
    payload = {"__type__": "FlightDelay", "new_departure": NOW + 13 * HOUR_MS}
    event = _event(EventKind.FLIGHT_DELAY, payload=payload)
    assert priority(event, Category.UTILITY, NOW) == Priority.NORMAL


@pytest.mark.parametrize("kind", [EventKind.PROMOTION, EventKind.FLIGHT_CANCELLATION])
def test_marketing_is_low_even_on_an_urgent_kind(kind: EventKind) -> None:
    """Marketing never gets urgency (which would let it bypass quiet hours)."""
    event = _event(kind, offer=Offer("lounge pass"))
    assert priority(event, derive_category(event), NOW) == Priority.LOW


@pytest.mark.parametrize(
    "kind", [EventKind.SHIPMENT_UPDATE, EventKind.DELIVERY_UPDATE, EventKind.SERVICE_UPDATE]
)
def test_other_utility_is_normal(kind: EventKind) -> None:
    """Shipment, delivery and service updates have normal priority."""
    event = _event(kind)
    assert priority(event, derive_category(event), NOW) == Priority.NORMAL


def test_the_urgent_departure_horizon_is_a_parameter() -> None:
    """decide passes the policy's urgent_departure_ms; a shorter horizon makes 3 h normal."""
    event = _event(EventKind.FLIGHT_DELAY, payload={"new_departure": NOW + 3 * HOUR_MS})
    assert priority(event, Category.UTILITY, NOW) == Priority.URGENT
    assert priority(event, Category.UTILITY, NOW, urgent_departure_ms=2 * HOUR_MS) == (
        Priority.NORMAL
    )

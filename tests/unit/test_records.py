"""Wire records (decoded Avro) to domain values and back, through the real codec."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.codec import LastFieldApart, default_registry
from pipeline.domain.models import (
    BusinessEvent,
    Candidate,
    Category,
    EventKind,
    Offer,
    Recipient,
    Template,
)
from pipeline.streams import records

CODEC = default_registry()
NS = "herald.v1."
PHONE = "+6281234567890"
PHONE_DIGITS = "6281234567890"
T = 1_732_520_000_000

PAYLOADS: list[tuple[str, dict[str, Any]] | None] = [
    None,
    (
        NS + "FlightDelay",
        {"flight": "GA404", "delay_minutes": 45, "new_departure": T, "gate": "D7"},
    ),
    (NS + "FlightDelay", {"flight": "GA404", "delay_minutes": 0, "new_departure": 0, "gate": None}),
    (NS + "FlightCancellation", {"flight": "QZ7510", "reason": "weather"}),
    (NS + "FlightCancellation", {"flight": "QZ7510", "reason": None}),
    (NS + "GateChange", {"flight": "JT610", "old_gate": "A1", "new_gate": "B2", "departure": T}),
    (NS + "GateChange", {"flight": "JT610", "old_gate": None, "new_gate": "B2", "departure": 5}),
    (NS + "ShipmentStatus", {"status": "OUT_FOR_DELIVERY", "location": "Jakarta", "eta": T}),
    (NS + "ShipmentStatus", {"status": "PICKED_UP", "location": None, "eta": None}),
    (NS + "ServiceUpdate", {"service": "internet", "status": "restored"}),
    (NS + "Passcode", {"ttl_seconds": 300}),
    (NS + "Promotion", {"campaign_id": "harbolnas-1212"}),
]


def _wire_event(payload: tuple[str, dict[str, Any]] | None = None, **over: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": "evt-1",
        "business_id": "garuda",
        "kind": "FLIGHT_DELAY",
        "occurred_at": T,
        "expires_at": None,
        "recipients": [PHONE, "+34 612 345 678"],
        "entity_id": None,
        "entity_version": None,
        "template": {"name": "flight_delay", "language": "id", "params": ["GA404", "45"]},
        "tags": [],
        "offer": None,
        "payload": payload,
    }
    record.update(over)
    return record


FULL_OFFER = {
    "description": "10% off",
    "code": "LOUNGE10",
    "discount_percent": 10,
    "valid_until": T + 1,
}
BARE_OFFER = {"description": "d", "code": None, "discount_percent": None, "valid_until": None}

EVENTS = [
    *[
        pytest.param(_wire_event(p), id=p[0].removeprefix(NS) if p else "no-payload")
        for p in PAYLOADS
    ],
    pytest.param(
        _wire_event(
            PAYLOADS[1],
            expires_at=T + 9,
            entity_id="GA404",
            entity_version=3,
            tags=["travel", "bali"],
            offer=FULL_OFFER,
        ),
        id="every-optional-filled",
    ),
    pytest.param(_wire_event(offer=BARE_OFFER, recipients=[]), id="bare-offer-no-recipients"),
]


@pytest.mark.parametrize("wire", EVENTS)
def test_event_round_trips_through_the_codec(wire: dict[str, Any]) -> None:
    """event_to_wire(event_from_wire(d)) gives back the decoded record and its bytes."""
    data = CODEC.encode("herald.v1.BusinessEvent", wire)
    decoded = CODEC.decode("herald.v1.BusinessEvent", data)
    event = records.event_from_wire(decoded)
    again = records.event_to_wire(event)

    assert again == decoded == wire
    assert CODEC.encode("herald.v1.BusinessEvent", again) == data


def test_event_from_wire_builds_domain_values() -> None:
    """The decoded record becomes enums, tuples, an Offer and a read-only typed payload."""
    wire = _wire_event(PAYLOADS[1], offer=FULL_OFFER, tags=["travel"])
    event = records.event_from_wire(
        CODEC.decode("BusinessEvent", CODEC.encode("BusinessEvent", wire))
    )

    assert event.kind is EventKind.FLIGHT_DELAY
    assert event.recipients == (PHONE, "+34 612 345 678")
    assert event.template == Template("flight_delay", "id", ("GA404", "45"))
    assert event.tags == ("travel",)
    assert event.offer == Offer("10% off", "LOUNGE10", 10, T + 1)
    assert event.payload["new_departure"] == T
    assert event.payload[records.PAYLOAD_TYPE] == NS + "FlightDelay"
    with pytest.raises(TypeError):
        event.payload["gate"] = "X"  # type: ignore[index]


_text = st.text(max_size=20)
_long = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@given(
    event_id=_text,
    business_id=_text,
    kind=st.sampled_from(list(EventKind)),
    occurred_at=_long,
    expires_at=st.none() | _long,
    recipients=st.lists(_text, max_size=4),
    entity_id=st.none() | _text,
    entity_version=st.none() | _long,
    params=st.lists(_text, max_size=3),
    tags=st.lists(_text, max_size=3),
    payload=st.sampled_from(PAYLOADS),
    offer=st.sampled_from([None, FULL_OFFER, BARE_OFFER]),
)
def test_any_event_round_trips(
    event_id: str,
    business_id: str,
    kind: EventKind,
    occurred_at: int,
    expires_at: int | None,
    recipients: list[str],
    entity_id: str | None,
    entity_version: int | None,
    params: list[str],
    tags: list[str],
    payload: Any,
    offer: Any,
) -> None:
    """Any text and any long survive wire -> domain -> wire unchanged."""
    wire = _wire_event(
        payload,
        event_id=event_id,
        business_id=business_id,
        kind=kind.value,
        occurred_at=occurred_at,
        expires_at=expires_at,
        recipients=recipients,
        entity_id=entity_id,
        entity_version=entity_version,
        tags=tags,
        offer=offer,
        template={"name": "n", "language": "en", "params": params},
    )
    data = CODEC.encode("herald.v1.BusinessEvent", wire)
    event = records.event_from_wire(CODEC.decode("herald.v1.BusinessEvent", data))
    assert CODEC.encode("herald.v1.BusinessEvent", records.event_to_wire(event)) == data


def test_candidate_batch_strips_recipients() -> None:
    """A candidate batch carries the event without any raw number, and unpacks per recipient."""
    event = records.event_from_wire(_wire_event(PAYLOADS[5], entity_id="JT610", entity_version=1))
    assert event.recipients
    recipients = [Recipient(0, "aa" * 32, "ID"), Recipient(3, "bb" * 32, "ES")]
    event_wire = records.event_to_wire(event, with_recipients=False)
    rest = records.candidate_batch_rest_to_wire(Category.UTILITY, recipients, ("t", 4, 99))

    assert event_wire["recipients"] == []
    apart = LastFieldApart(CODEC, "herald.v1.CandidateBatch")  # as ingest writes them
    data = apart.encode(rest, apart.encode_last(event_wire))
    assert PHONE_DIGITS.encode() not in data
    assert b"612 345 678" not in data
    decoded = CODEC.decode("herald.v1.CandidateBatch", data)
    assert (decoded["source_topic"], decoded["source_partition"], decoded["source_offset"]) == (
        "t",
        4,
        99,
    )
    bare = dataclasses.replace(event, recipients=())
    assert records.candidates_from_wire(decoded) == [
        Candidate(bare, Category.UTILITY, r) for r in recipients
    ]


def test_event_to_wire_without_recipients_keeps_the_rest() -> None:
    """Dropping recipients changes only the recipients field."""
    event = records.event_from_wire(_wire_event(PAYLOADS[3], offer=FULL_OFFER))
    full = records.event_to_wire(event)
    bare = records.event_to_wire(event, with_recipients=False)
    assert bare == {**full, "recipients": []}
    assert full["recipients"] == [PHONE, "+34 612 345 678"]


def test_account_link_and_signal_round_trip() -> None:
    """Account links and user signals survive wire -> domain -> wire through the codec."""
    link = {
        "subscriber": "ab" * 32,
        "wa_id": PHONE_DIGITS,
        "status": "DELETED",
        "locale": "id_ID",
        "timezone": "Asia/Jakarta",
        "country": "ID",
        "interests": ["travel", "food"],
        "linked_accounts": {"instagram": "ig-1"},
        "updated_at": T,
    }
    signal = {
        "subscriber": "cd" * 32,
        "business_id": None,
        "kind": "INBOUND_MESSAGE",
        "scope": "MARKETING",
        "text": "STOP",
        "source": "chat",
        "consent_version": "c-3",
        "occurred_at": T,
    }
    decoded_link = CODEC.decode("AccountLink", CODEC.encode("AccountLink", link))
    decoded_signal = CODEC.decode("UserSignal", CODEC.encode("UserSignal", signal))
    assert records.account_link_to_wire(records.account_link_from_wire(decoded_link)) == link
    assert records.signal_to_wire(records.signal_from_wire(decoded_signal)) == signal


def test_domain_event_round_trips_from_the_domain_side() -> None:
    """A BusinessEvent built in code comes back equal after a trip over the wire."""
    event = BusinessEvent(
        event_id="e",
        business_id="b",
        kind=EventKind.PROMOTION,
        occurred_at=T,
        recipients=(PHONE,),
        template=Template("promo", "en", ("x",)),
        tags=("sale",),
        offer=Offer("half price"),
        payload=records.event_from_wire(_wire_event(PAYLOADS[-1])).payload,
    )
    data = CODEC.encode("BusinessEvent", records.event_to_wire(event))
    assert records.event_from_wire(CODEC.decode("BusinessEvent", data)) == event

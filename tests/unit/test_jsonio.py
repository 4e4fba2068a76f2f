"""JSON lines to wire records and back, for `herald publish`, `herald tail` and the simulator."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline import topics
from pipeline.codec import default_registry
from pipeline.domain.keys import DEVELOPMENT_SECRET, normalise, subscriber_key
from pipeline.jsonio import InputError, json_to_record, record_to_json, to_millis

CODEC = default_registry()
SECRET = b"a-test-secret"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PHONE = "+62 812-3456-7890"
PHONE_DIGITS = "6281234567890"


def _event(**over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "event_id": "evt-1",
        "business_id": "garuda",
        "kind": "FLIGHT_DELAY",
        "occurred_at": "2024-11-25T10:00:00Z",
        "recipients": [PHONE],
        "template": {"name": "flight_delay", "language": "id", "params": ["GA404"]},
        "payload": {
            "FlightDelay": {
                "flight": "GA404",
                "delay_minutes": 45,
                "new_departure": "2024-11-25T12:30:00+07:00",
                "gate": None,
            }
        },
    }
    obj.update(over)
    return obj


# --- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("2024-11-25T10:00:00Z", 1_732_528_800_000),
        ("2024-11-25T10:00:00+00:00", 1_732_528_800_000),
        ("2024-11-25T17:00:00+07:00", 1_732_528_800_000),
        ("2024-11-25T05:00:00-05:00", 1_732_528_800_000),
        ("2024-11-25T10:00:00.123Z", 1_732_528_800_123),
        ("2024-11-25T10:00:00.999999Z", 1_732_528_800_999),
        ("1970-01-01T00:00:00Z", 0),
    ],
)
def test_iso_timestamps_become_epoch_millis(text: str, millis: int) -> None:
    """ISO-8601 text with Z or an offset becomes UTC epoch milliseconds."""
    assert to_millis(text, "occurred_at") == millis


@pytest.mark.parametrize(
    "text", ["1987-05-10T10:40:21.915Z", "2039-01-12T23:59:04.595Z", "1952-09-30T02:38:27.386Z"]
)
def test_iso_timestamps_are_exact_to_the_millisecond(text: str) -> None:
    """Every millisecond written in ISO-8601 comes back exactly, whatever the float rounding."""
    expected = (datetime.fromisoformat(text) - EPOCH) // timedelta(milliseconds=1)
    assert to_millis(text, "occurred_at") == expected


@given(st.integers(min_value=946_684_800, max_value=4_102_444_800))
def test_whole_second_iso_timestamps_round_trip(seconds: int) -> None:
    """An ISO-8601 rendering of any whole second of this century maps back to its millis."""
    text = (EPOCH + timedelta(seconds=seconds)).isoformat()
    assert to_millis(text, "x") == seconds * 1000


@pytest.mark.parametrize("value", [0, 1_732_528_800_000, -5, None])
def test_epoch_millis_and_null_pass_through(value: int | None) -> None:
    """Integers are already epoch milliseconds and null stays null."""
    assert to_millis(value, "expires_at") == value


@pytest.mark.parametrize("text", ["2024-11-25T10:00:00", "2024-11-25", "2024-11-25 10:00"])
def test_timestamp_without_offset_is_rejected(text: str) -> None:
    """A timestamp without a UTC offset is ambiguous and rejected, naming the field."""
    with pytest.raises(InputError, match="occurred_at: timestamp needs a UTC offset"):
        to_millis(text, "occurred_at")


@pytest.mark.parametrize("value", ["yesterday", "1732528800000", 1.5, [1]])
def test_non_timestamps_are_rejected(value: object) -> None:
    """Text that is no ISO-8601 and values of other types are refused, naming the field."""
    with pytest.raises(InputError, match=r"^expires_at: "):
        to_millis(value, "expires_at")


# --- business events ------------------------------------------------------------------------


def test_business_event_converts_times_and_payload() -> None:
    """Timestamps anywhere in the event become millis; the payload becomes a full-name tuple."""
    key, record = json_to_record(topics.BUSINESS_EVENTS, _event(), SECRET)

    assert key == b"garuda"
    assert record["occurred_at"] == 1_732_528_800_000
    assert record["payload"] == (
        "herald.v1.FlightDelay",
        {"flight": "GA404", "delay_minutes": 45, "new_departure": 1_732_512_600_000, "gate": None},
    )
    assert record["recipients"] == [PHONE], "numbers are keyed later, by ingest"
    data = CODEC.encode("herald.v1.BusinessEvent", record)
    assert CODEC.decode("herald.v1.BusinessEvent", data)["payload"] == record["payload"]


def test_full_name_payload_and_offer_times() -> None:
    """A payload already named in full is kept; the offer's valid_until is converted too."""
    obj = _event(
        kind="PROMOTION",
        payload={"herald.v1.Promotion": {"campaign_id": "c-1"}},
        offer={"description": "d", "valid_until": "2024-11-26T00:00:00Z"},
    )
    _, record = json_to_record(topics.BUSINESS_EVENTS, obj, SECRET)
    assert record["payload"] == ("herald.v1.Promotion", {"campaign_id": "c-1"})
    assert record["offer"]["valid_until"] == 1_732_579_200_000


@pytest.mark.parametrize(
    "payload", [{}, {"FlightDelay": {}, "GateChange": {}}], ids=["empty", "two-branches"]
)
def test_payload_must_name_one_branch(payload: dict[str, Any]) -> None:
    """A payload object must have exactly one record name."""
    with pytest.raises(InputError, match="payload"):
        json_to_record(topics.BUSINESS_EVENTS, _event(payload=payload), SECRET)


@pytest.mark.parametrize("missing", ["event_id", "business_id"])
def test_business_event_needs_its_ids(missing: str) -> None:
    """An event without event_id or business_id is refused before any encoding."""
    obj = _event()
    del obj[missing]
    with pytest.raises(InputError):
        json_to_record(topics.BUSINESS_EVENTS, obj, SECRET)


def test_output_topics_cannot_be_published_to() -> None:
    """Publishing is for input topics only."""
    with pytest.raises(InputError, match="not supported"):
        json_to_record(topics.DELIVERIES, {"message_id": "m"}, SECRET)


# --- phone numbers on account-links and user-signals -----------------------------------------


def _link(**over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "phone": PHONE,
        "status": "ACTIVE",
        "locale": "id_ID",
        "country": "ID",
        "updated_at": "2024-11-25T10:00:00Z",
    }
    obj.update(over)
    return obj


def test_phone_on_account_link_becomes_subscriber_key_and_wa_id() -> None:
    """`phone` is replaced by its HMAC subscriber key, and sets the link's wa_id."""
    key, record = json_to_record(topics.ACCOUNT_LINKS, _link(), SECRET)

    expected = subscriber_key(normalise(PHONE)[0], SECRET)
    assert record["subscriber"] == expected
    assert key == expected.encode()
    assert record["wa_id"] == PHONE_DIGITS
    assert "phone" not in record
    assert record["updated_at"] == 1_732_528_800_000
    assert expected != subscriber_key(normalise(PHONE)[0], DEVELOPMENT_SECRET), "keyed by secret"
    CODEC.encode("herald.v1.AccountLink", record)


def test_explicit_wa_id_is_kept() -> None:
    """A wa_id given alongside the phone is not overwritten."""
    _, record = json_to_record(topics.ACCOUNT_LINKS, _link(wa_id="given"), SECRET)
    assert record["wa_id"] == "given"


def test_phone_on_user_signal_becomes_subscriber_key_only() -> None:
    """On user-signals `phone` becomes the subscriber key and adds no wa_id."""
    obj = {
        "phone": "0062 812 3456 7890",
        "kind": "OPT_IN",
        "source": "app",
        "occurred_at": 1_732_528_800_000,
    }
    key, record = json_to_record(topics.USER_SIGNALS, obj, SECRET)

    expected = subscriber_key("+6281234567890", SECRET)
    assert (key, record["subscriber"]) == (expected.encode(), expected)
    assert "wa_id" not in record and "phone" not in record
    CODEC.encode("herald.v1.UserSignal", record)


def test_subscriber_key_given_directly_is_used() -> None:
    """Without a phone, the subscriber key given is the record key."""
    obj = {"subscriber": "ab" * 32, "kind": "OPT_OUT", "source": "app", "occurred_at": 0}
    key, record = json_to_record(topics.USER_SIGNALS, obj, SECRET)
    assert (key, record["subscriber"]) == (b"ab" * 32, "ab" * 32)


def test_neither_phone_nor_subscriber_is_refused() -> None:
    """A link or signal must say whose it is."""
    with pytest.raises(InputError, match="subscriber"):
        json_to_record(topics.USER_SIGNALS, {"kind": "OPT_IN"}, SECRET)


@pytest.mark.parametrize("phone", ["+999 1234567", "081234567890", "+62 812 CALL NOW", "+6"])
@pytest.mark.parametrize("topic", [topics.ACCOUNT_LINKS, topics.USER_SIGNALS])
def test_invalid_phone_error_carries_no_digits(topic: str, phone: str) -> None:
    """An unusable phone is a ValueError whose message quotes no digit of it."""
    with pytest.raises(ValueError) as info:
        json_to_record(topic, _link(phone=phone), SECRET)
    assert not any(ch.isdigit() for ch in str(info.value))


# --- decoded records to JSON -----------------------------------------------------------------


def test_record_to_json_names_union_branches_and_encodes_bytes() -> None:
    """Union tuples become {"ShortName": {...}} and bytes become base64, at any depth."""
    record = {
        "payload": ("herald.v1.GateChange", {"flight": "JT610", "gate": None}),
        "key": b"\x00\xffk",
        "nested": [{"value": b"v"}, ("herald.v1.Passcode", {"ttl_seconds": 30})],
        "plain": 7,
        "none": None,
    }
    out = record_to_json(record)

    assert out == {
        "payload": {"GateChange": {"flight": "JT610", "gate": None}},
        "key": base64.b64encode(b"\x00\xffk").decode(),
        "nested": [{"value": "dg=="}, {"Passcode": {"ttl_seconds": 30}}],
        "plain": 7,
        "none": None,
    }
    json.dumps(out)


def test_decoded_dead_letter_becomes_json() -> None:
    """A decoded DeadLetter (bytes key and value) renders as JSON whose bytes decode back."""
    dead = {
        "dead_letter_id": "t/0/1",
        "source_topic": "t",
        "source_partition": 0,
        "source_offset": 1,
        "key": None,
        "value": b"\xc3\x01garbage",
        "stage": "decode",
        "error_type": "X",
        "error_message": "m",
        "failed_at": 0,
        "replay_count": 0,
    }
    decoded = CODEC.decode("herald.v1.DeadLetter", CODEC.encode("herald.v1.DeadLetter", dead))
    out = json.loads(json.dumps(record_to_json(decoded)))
    assert base64.b64decode(out["value"]) == b"\xc3\x01garbage"
    assert out["key"] is None


def test_published_event_tails_back_to_the_same_json_shape() -> None:
    """publish then tail gives back the payload in the {"Name": {...}} form it was written in."""
    _, record = json_to_record(topics.BUSINESS_EVENTS, _event(), SECRET)
    decoded = CODEC.decode("herald.v1.BusinessEvent", CODEC.encode("BusinessEvent", record))
    out = record_to_json(decoded)
    assert out["payload"] == {
        "FlightDelay": {
            "flight": "GA404",
            "delay_minutes": 45,
            "new_departure": 1_732_512_600_000,
            "gate": None,
        }
    }
    # Re-publishing what tail printed yields the same record.
    assert json_to_record(topics.BUSINESS_EVENTS, out, SECRET)[1] == decoded

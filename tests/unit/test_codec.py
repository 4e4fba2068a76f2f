"""Avro single-object codec: schemas, framing, fingerprints, evolution and failure modes."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.codec import (
    HEADER_LENGTH,
    MAGIC,
    SCHEMAS_DIR_ENV,
    CodecError,
    InvalidRecord,
    LastFieldApart,
    MalformedBody,
    NotSingleObjectEncoded,
    SchemaLoadError,
    SchemaRegistry,
    UnknownFingerprint,
    WrongRecordType,
    default_registry,
    schemas_dir,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
SCHEMA_FILES = sorted(SCHEMAS.glob("*.avsc"))
PHONE = "+6281234567890"
PHONE_DIGITS = "6281234567890"
NS = "herald.v1."

# --- An independent CRC-64-AVRO, transcribed from the Avro specification ("Schema Fingerprints").

_EMPTY = 0xC15D213AA4D7A795


def _rabin_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _rabin_table()


def crc64_avro(data: bytes) -> int:
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


# --- Example records: every record type, every payload branch, nulls and filled optionals.

TEMPLATE = {"name": "flight_delay", "language": "id", "params": ["GA404", "45"]}

PAYLOADS: list[tuple[str, dict[str, Any]] | None] = [
    None,
    (
        NS + "FlightDelay",
        {"flight": "GA404", "delay_minutes": 45, "new_departure": 1_732_530_000_000, "gate": "D7"},
    ),
    (NS + "FlightDelay", {"flight": "GA404", "delay_minutes": 0, "new_departure": 0, "gate": None}),
    (NS + "FlightCancellation", {"flight": "QZ7510", "reason": "weather"}),
    (NS + "FlightCancellation", {"flight": "QZ7510", "reason": None}),
    (NS + "GateChange", {"flight": "JT610", "old_gate": "A1", "new_gate": "B2", "departure": 5}),
    (NS + "GateChange", {"flight": "JT610", "old_gate": None, "new_gate": "B2", "departure": 5}),
    (NS + "ShipmentStatus", {"status": "OUT_FOR_DELIVERY", "location": "Jakarta", "eta": 7}),
    (NS + "ShipmentStatus", {"status": "PICKED_UP", "location": None, "eta": None}),
    (NS + "ServiceUpdate", {"service": "internet", "status": "restored"}),
    (NS + "Passcode", {"ttl_seconds": 300}),
    (NS + "Promotion", {"campaign_id": "harbolnas-1212"}),
]


def business_event(
    payload: tuple[str, dict[str, Any]] | None = None, **over: Any
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": "evt-1",
        "business_id": "garuda",
        "kind": "FLIGHT_DELAY",
        "occurred_at": 1_732_520_000_000,
        "expires_at": None,
        "recipients": [PHONE, "081234567891"],
        "entity_id": None,
        "entity_version": None,
        "template": TEMPLATE,
        "tags": [],
        "offer": None,
        "payload": payload,
    }
    record.update(over)
    return record


FULL_EVENT = business_event(
    PAYLOADS[1],
    expires_at=1_732_540_000_000,
    entity_id="GA404-2024-11-25",
    entity_version=3,
    tags=["travel", "bali"],
    offer={
        "description": "10% off lounge",
        "code": "LOUNGE10",
        "discount_percent": 10,
        "valid_until": 9,
    },
)

DELIVERY = {
    "message_id": "m-1",
    "event_id": "evt-1",
    "business_id": "garuda",
    "subscriber": "ab" * 32,
    "wa_id": PHONE,
    "recipient_index": 0,
    "kind": "FLIGHT_DELAY",
    "category": "UTILITY",
    "template": TEMPLATE,
    "entity_id": "GA404-2024-11-25",
    "priority": "URGENT",
    "deliver_after": None,
    "expires_at": 1_732_540_000_000,
    "decided_at": 1_732_520_000_000,
    "policy_version": "2024.11.1",
    "rule": "utility.urgent",
    "detail": "departure within 12 h",
}

EXAMPLES: list[tuple[str, dict[str, Any]]] = [
    (
        "BusinessProfile",
        {
            "business_id": "garuda",
            "tier": "TIER_2",
            "verified": True,
            "status": "SUSPENDED",
            "reason": "abuse flagged on a linked app",
            "updated_at": 1_732_500_000_000,
        },
    ),
    (
        "LinkReputation",
        {
            "domain": "evil.example",
            "verdict": "BLOCKED",
            "source": "scanner",
            "updated_at": 1_732_500_000_000,
        },
    ),
    *[("BusinessEvent", business_event(p)) for p in PAYLOADS],
    ("BusinessEvent", FULL_EVENT),
    (
        "BusinessEvent",
        business_event(
            offer={"description": "d", "code": None, "discount_percent": None, "valid_until": None}
        ),
    ),
    (
        "AccountLink",
        {
            "subscriber": "ab" * 32,
            "wa_id": PHONE,
            "status": "ACTIVE",
            "locale": "id_ID",
            "timezone": "Asia/Jakarta",
            "country": "ID",
            "interests": ["travel"],
            "linked_accounts": {"instagram": "ig-1", "facebook": "fb-2"},
            "updated_at": 1,
        },
    ),
    (
        "AccountLink",
        {
            "subscriber": "ab" * 32,
            "wa_id": PHONE,
            "status": "DELETED",
            "locale": "en",
            "timezone": None,
            "country": "ID",
            "interests": [],
            "linked_accounts": {},
            "updated_at": 0,
        },
    ),
    (
        "UserSignal",
        {
            "subscriber": "cd" * 32,
            "business_id": "garuda",
            "kind": "INBOUND_MESSAGE",
            "scope": "MARKETING",
            "text": "berhenti",
            "source": "chat",
            "consent_version": "c-3",
            "occurred_at": 2,
        },
    ),
    (
        "UserSignal",
        {
            "subscriber": "cd" * 32,
            "business_id": None,
            "kind": "OPT_OUT",
            "scope": "ALL",
            "text": None,
            "source": "settings",
            "consent_version": None,
            "occurred_at": 2,
        },
    ),
    ("Delivery", DELIVERY),
    (
        "Delivery",
        {
            **DELIVERY,
            "entity_id": None,
            "deliver_after": 3,
            "expires_at": None,
            "priority": "LOW",
            "category": "MARKETING",
            "kind": "PROMOTION",
        },
    ),
    (
        "Suppression",
        {
            "message_id": "m-2",
            "event_id": "evt-1",
            "business_id": "garuda",
            "subscriber": "ef" * 32,
            "recipient_index": 1,
            "category": "MARKETING",
            "reason": "OPTED_OUT",
            "rule": "consent.opted_out",
            "detail": "opted out of marketing",
            "decided_at": 4,
            "policy_version": "2024.11.1",
        },
    ),
    (
        "DeadLetter",
        {
            "dead_letter_id": "business-events/0/17",
            "source_topic": "business-events",
            "source_partition": 0,
            "source_offset": 17,
            "key": b"garuda",
            "value": b"\xc3\x01garbage",
            "stage": "ingest.decode",
            "error_type": "UnknownFingerprint",
            "error_message": "fingerprint 00 is not registered",
            "failed_at": 5,
            "replay_count": 2,
        },
    ),
    (
        "DeadLetter",
        {
            "dead_letter_id": "x/1/2",
            "source_topic": "x",
            "source_partition": 1,
            "source_offset": 2,
            "key": None,
            "value": b"",
            "stage": "s",
            "error_type": "E",
            "error_message": "",
            "failed_at": 0,
            "replay_count": 0,
        },
    ),
    (
        "CandidateBatch",
        {
            "event": business_event(PAYLOADS[5], recipients=[]),
            "category": "UTILITY",
            "candidates": [
                {
                    "subscriber": "ab" * 32,
                    "recipient_index": 0,
                    "region": "ID",
                    "zones": ["Asia/Jakarta"],
                    "limited": False,
                },
                {
                    "subscriber": "cd" * 32,
                    "recipient_index": 4,
                    "region": "SG",
                    "zones": [],
                    "limited": True,
                },
            ],
            "source_topic": "business-events",
            "source_partition": 2,
            "source_offset": 99,
        },
    ),
    ("CandidateBundle", {"batches": [b"\xc3\x01 any bytes", b""]}),
    (
        "CandidateBatch",
        {
            "event": FULL_EVENT,
            "category": "MARKETING",
            "candidates": [],
            "source_topic": "t",
            "source_partition": 0,
            "source_offset": 0,
        },
    ),
]


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry.from_directory(SCHEMAS)


def _named_definitions(schema: Any, namespace: str, out: dict[str, Any]) -> None:
    """Collect every inline named type definition of a raw schema by full name."""
    if isinstance(schema, list):
        for branch in schema:
            _named_definitions(branch, namespace, out)
    elif isinstance(schema, dict):
        namespace = schema.get("namespace", namespace)
        if schema.get("type") in ("record", "enum", "fixed"):
            out.setdefault(f"{namespace}.{schema['name']}", []).append(schema)
        for f in schema.get("fields", []):
            _named_definitions(f["type"], namespace, out)
        for key in ("items", "values"):
            if key in schema:
                _named_definitions(schema[key], namespace, out)


def _hides_original(error: BaseException) -> bool:
    """True if a traceback of `error` cannot show a chained fastavro message (which has values)."""
    return error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


# --- Schemas ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_schema_file_parses_on_its_own(path: Path) -> None:
    """Each .avsc file is self-contained and valid for fastavro.parse_schema."""
    raw = json.loads(path.read_text())
    parsed = fastavro.parse_schema(raw, {})
    assert isinstance(parsed, dict)
    assert parsed["name"] == NS + path.name.split(".")[0]
    assert raw.get("doc"), "every record has a doc"


def test_registry_holds_every_record() -> None:
    """The repository's schema directory registers the ten wire records."""
    names = default_registry().names()
    assert names == tuple(
        NS + n
        for n in sorted(
            [
                "AccountLink",
                "BusinessEvent",
                "BusinessProfile",
                "CandidateBatch",
                "CandidateBundle",
                "DeadLetter",
                "Delivery",
                "LinkReputation",
                "Suppression",
                "UserSignal",
            ]
        )
    )


def test_shared_named_types_are_identical_everywhere() -> None:
    """A named type repeated in several files (Template, Category...) is defined identically."""
    definitions: dict[str, Any] = {}
    for path in SCHEMA_FILES:
        if ".v1." in path.name:
            _named_definitions(json.loads(path.read_text()), "", definitions)
    assert {NS + "Template", NS + "EventKind", NS + "Category"} <= definitions.keys()
    for name, defs in definitions.items():
        assert all(d == defs[0] for d in defs), name


def test_timestamps_decode_as_int_millis(registry: SchemaRegistry) -> None:
    """Timestamps stay int milliseconds on decode (no datetime conversion)."""
    decoded = registry.decode("BusinessEvent", registry.encode("BusinessEvent", FULL_EVENT))
    assert type(decoded["occurred_at"]) is int
    assert decoded["occurred_at"] == FULL_EVENT["occurred_at"]


# --- Round trips and framing --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, record", EXAMPLES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(EXAMPLES)]
)
def test_round_trip(registry: SchemaRegistry, name: str, record: dict[str, Any]) -> None:
    """decode(encode(r)) == r and encode(decode(b)) == b for every record type and branch."""
    data = registry.encode(name, record)
    decoded = registry.decode(name, data)
    assert decoded == record
    assert registry.encode(name, decoded) == data


def test_payload_decodes_as_branch_name_and_offer_as_plain_dict(registry: SchemaRegistry) -> None:
    """A multi-record union names its branch; a [null, record] union decodes to the record."""
    decoded = registry.decode("BusinessEvent", registry.encode("BusinessEvent", FULL_EVENT))
    assert decoded["payload"] == FULL_EVENT["payload"]
    assert decoded["payload"][0] == NS + "FlightDelay"
    assert decoded["offer"] == FULL_EVENT["offer"]


def test_short_and_full_names_are_the_same_record(registry: SchemaRegistry) -> None:
    """'Delivery' and 'herald.v1.Delivery' name the same schema."""
    assert registry.encode("Delivery", DELIVERY) == registry.encode(NS + "Delivery", DELIVERY)
    assert registry.latest("Delivery") is registry.latest(NS + "Delivery")


def test_omitted_defaults_are_filled_in(registry: SchemaRegistry) -> None:
    """Fields with a default may be left out when encoding and decode to the default."""
    record = dict(EXAMPLES[-4][1])
    del record["replay_count"]
    assert registry.decode("DeadLetter", registry.encode("DeadLetter", record))["replay_count"] == 0


@pytest.mark.parametrize("name", sorted({n for n, _ in EXAMPLES}))
def test_header_is_magic_and_fingerprint(registry: SchemaRegistry, name: str) -> None:
    """Messages start with C3 01 and the writer schema's 8-byte fingerprint."""
    record = next(r for n, r in EXAMPLES if n == name)
    data = registry.encode(name, record)
    assert data[:2] == b"\xc3\x01" == MAGIC
    assert data[2:10] == registry.latest(name).fingerprint
    assert registry.writer_of(data) is registry.latest(name)


def test_crc64_avro_matches_published_vectors() -> None:
    """The test's own CRC-64-AVRO matches the Avro spec's test vectors (schema-tests.txt)."""
    assert crc64_avro(b'"int"') == 8247732601305521295
    record_foo = b'{"name":"foo","type":"record","fields":[]}'
    assert crc64_avro(record_foo) == -4824392279771201922 % 2**64


def test_fingerprints_are_crc64_avro_of_canonical_form(registry: SchemaRegistry) -> None:
    """Every registered fingerprint is CRC-64-AVRO of the Parsing Canonical Form, little-endian."""
    for name in registry.names():
        for version in registry.versions(name):
            expected = crc64_avro(version.canonical_form.encode()).to_bytes(8, "little")
            assert version.fingerprint == expected, name


def test_canonical_form_and_fingerprint_of_a_known_schema(tmp_path: Path) -> None:
    """Canonical form drops docs and defaults, keeps full names; the header carries its CRC."""
    (tmp_path / "Ping.v1.avsc").write_text(
        json.dumps(
            {
                "type": "record",
                "name": "Ping",
                "namespace": "herald.v1",
                "doc": "a doc",
                "fields": [
                    {"name": "at", "type": "long", "doc": "epoch milliseconds UTC", "default": 0}
                ],
            }
        )
    )
    version = SchemaRegistry.from_directory(tmp_path).latest("herald.v1.Ping")
    canonical = '{"name":"herald.v1.Ping","type":"record","fields":[{"name":"at","type":"long"}]}'
    assert version.canonical_form == canonical
    assert version.fingerprint == crc64_avro(canonical.encode()).to_bytes(8, "little")


# --- Schema evolution ---------------------------------------------------------------------------


def _user_signal_v2() -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((SCHEMAS / "UserSignal.v1.avsc").read_text())
    raw["fields"].append(
        {"name": "channel", "type": "string", "default": "app", "doc": "added in v2"}
    )
    return raw


SIGNAL_V1 = next(r for n, r in EXAMPLES if n == "UserSignal")


def test_v1_data_decodes_into_v2_with_defaults(tmp_path: Path) -> None:
    """Data written with v1 decodes with the v2 reader; the new field takes its default."""
    v1_only = tmp_path / "v1"
    both = tmp_path / "both"
    for d in (v1_only, both):
        d.mkdir()
        (d / "UserSignal.v1.avsc").write_text((SCHEMAS / "UserSignal.v1.avsc").read_text())
    (both / "UserSignal.v2.avsc").write_text(json.dumps(_user_signal_v2()))
    old, new = SchemaRegistry.from_directory(v1_only), SchemaRegistry.from_directory(both)
    assert [v.version for v in new.versions("UserSignal")] == [1, 2]

    written_by_v1 = old.encode("UserSignal", SIGNAL_V1)
    assert new.decode("UserSignal", written_by_v1) == {**SIGNAL_V1, "channel": "app"}

    written_by_v2 = new.encode("UserSignal", {**SIGNAL_V1, "channel": "sms"})
    assert written_by_v2[2:10] == new.latest("UserSignal").fingerprint != written_by_v1[2:10]
    assert new.decode("UserSignal", written_by_v2) == {**SIGNAL_V1, "channel": "sms"}
    with pytest.raises(UnknownFingerprint):
        old.decode("UserSignal", written_by_v2)


def test_suppression_reason_added_later_reads_as_other(registry: SchemaRegistry) -> None:
    """A reader with the v1 Suppression schema maps a reason it does not know to OTHER."""
    v1 = registry.versions("Suppression")[0].schema
    raw = json.loads((SCHEMAS / "Suppression.v1.avsc").read_text())
    reason = next(f for f in raw["fields"] if f["name"] == "reason")
    reason["type"]["symbols"].append("RATE_LIMITED")
    v2 = fastavro.parse_schema(raw, {})
    record = {**next(r for n, r in EXAMPLES if n == "Suppression"), "reason": "RATE_LIMITED"}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, v2, record)
    body.seek(0)
    decoded = fastavro.schemaless_reader(body, v2, v1)
    assert isinstance(decoded, dict)
    assert decoded["reason"] == "OTHER"


# --- Failure modes ------------------------------------------------------------------------------


def test_unknown_fingerprint(registry: SchemaRegistry) -> None:
    """A fingerprint no schema file produced raises UnknownFingerprint."""
    data = registry.encode("Delivery", DELIVERY)
    with pytest.raises(UnknownFingerprint):
        registry.decode("Delivery", data[:2] + bytes(8) + data[10:])


def test_wrong_record_type(registry: SchemaRegistry) -> None:
    """A message of another record type raises WrongRecordType, not a garbled decode."""
    data = registry.encode("Delivery", DELIVERY)
    with pytest.raises(WrongRecordType):
        registry.decode("Suppression", data)


@pytest.mark.parametrize("data", [b"", b"\xc3\x01", b"\xc3\x01" + bytes(7), b"\x00" * 20, b"{}"])
def test_not_single_object_encoded(registry: SchemaRegistry, data: bytes) -> None:
    """Bytes without the C3 01 marker and a full fingerprint raise NotSingleObjectEncoded."""
    with pytest.raises(NotSingleObjectEncoded):
        registry.decode("Delivery", data)


def test_none_is_not_single_object_encoded(registry: SchemaRegistry) -> None:
    """A tombstone (None value) raises NotSingleObjectEncoded rather than a TypeError."""
    with pytest.raises(NotSingleObjectEncoded):
        registry.decode("AccountLink", None)  # type: ignore[arg-type]


def test_truncated_bodies_are_malformed(registry: SchemaRegistry) -> None:
    """Every truncation of a valid message's body raises MalformedBody."""
    data = registry.encode("BusinessEvent", FULL_EVENT)
    for end in range(10, len(data)):
        with pytest.raises(MalformedBody):
            registry.decode("BusinessEvent", data[:end])


@pytest.mark.parametrize("extra", [b"\x00", b"garbage", b"\xc3\x01"])
def test_trailing_garbage_is_malformed(registry: SchemaRegistry, extra: bytes) -> None:
    """Bytes after a complete body raise MalformedBody."""
    data = registry.encode("Delivery", DELIVERY)
    with pytest.raises(MalformedBody):
        registry.decode("Delivery", data + extra)


def test_unknown_record_name_is_a_programming_error(registry: SchemaRegistry) -> None:
    """Asking for a record no schema defines is a KeyError, not a (dead-lettered) CodecError."""
    with pytest.raises(KeyError) as info:
        registry.encode("Nope", {})
    assert not isinstance(info.value, CodecError)


@pytest.mark.parametrize(
    "change",
    [
        {"recipient_index": "3"},
        {"recipient_index": 2**31},
        {"recipient_index": 1.5},
        {"recipient_index": True},
        {"decided_at": 2**63},
        {"priority": "SOMETIMES"},
        {"template": {**TEMPLATE, "params": "abc"}},
        {"template": {**TEMPLATE, "params": [1]}},
        {"entity_id": 7},
        {"wa_idd": PHONE},
        {"detail": None},
    ],
)
def test_records_that_do_not_fit_are_invalid(
    registry: SchemaRegistry, change: dict[str, Any]
) -> None:
    """Wrong types, out-of-range ints, unknown symbols and unknown fields raise InvalidRecord."""
    with pytest.raises(InvalidRecord):
        registry.encode("Delivery", {**DELIVERY, **change})


def test_missing_field_without_default_is_invalid(registry: SchemaRegistry) -> None:
    """Leaving out a field that has no default raises InvalidRecord."""
    record = dict(DELIVERY)
    del record["wa_id"]
    with pytest.raises(InvalidRecord):
        registry.encode("Delivery", record)


@pytest.mark.parametrize(
    "payload",
    [
        ("herald.v1.Nope", {}),
        ("FlightDelay", FULL_EVENT["payload"][1]),
        (NS + "Passcode", {"ttl_seconds": "x"}),
        "x",
    ],
)
def test_bad_payload_branch_is_invalid(registry: SchemaRegistry, payload: Any) -> None:
    """An unknown or short branch name, or a branch with wrong fields, raises InvalidRecord."""
    with pytest.raises(InvalidRecord):
        registry.encode("BusinessEvent", business_event(payload))


def test_encode_errors_carry_no_field_values(registry: SchemaRegistry) -> None:
    """InvalidRecord names the record and field, never a value (it could be a phone number)."""
    for change in (
        {"recipient_index": PHONE},
        {"decided_at": PHONE},
        {"wa_id": int(PHONE_DIGITS)},
        {"template": {**TEMPLATE, "params": [int(PHONE_DIGITS)]}},
    ):
        with pytest.raises(InvalidRecord) as info:
            registry.encode("Delivery", {**DELIVERY, **change})
        message = str(info.value)
        assert PHONE_DIGITS not in message
        assert "herald.v1.Delivery" in message
        assert _hides_original(info.value)


def test_decode_errors_carry_no_field_values(registry: SchemaRegistry) -> None:
    """MalformedBody names record, fingerprint and sizes, never the bytes or values."""
    data = registry.encode("Delivery", DELIVERY)
    cut = data.index(PHONE.encode()) + 5
    for bad in (data[:cut], data + PHONE.encode()):
        with pytest.raises(MalformedBody) as info:
            registry.decode("Delivery", bad)
        assert PHONE_DIGITS not in str(info.value)
        assert registry.latest("Delivery").fingerprint.hex() in str(info.value)
        assert _hides_original(info.value)


# --- Property: whatever the bytes, decode returns a record or raises a CodecError -------------

_VERSIONS = [v for n in default_registry().names() for v in default_registry().versions(n)]
_VALID = [(n, default_registry().encode(n, r)) for n, r in EXAMPLES]


def _decode_or_codec_error(name: str, data: bytes) -> None:
    try:
        record = default_registry().decode(name, data)
    except CodecError:
        return
    assert isinstance(record, dict)


@settings(max_examples=300)
@given(name=st.sampled_from(default_registry().names()), data=st.binary(max_size=200))
def test_random_bytes_raise_only_codec_errors(name: str, data: bytes) -> None:
    """Arbitrary bytes never raise anything but a CodecError subclass."""
    _decode_or_codec_error(name, data)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(version=st.sampled_from(_VERSIONS), body=st.binary(max_size=300))
def test_random_bodies_behind_valid_headers_raise_only_codec_errors(
    version: Any, body: bytes
) -> None:
    """A registered fingerprint followed by random bytes decodes or raises a CodecError."""
    _decode_or_codec_error(version.name, version.header + body)


@settings(max_examples=500)
@given(
    example=st.sampled_from(_VALID),
    position=st.integers(min_value=0),
    byte=st.integers(min_value=0, max_value=255),
    cut=st.integers(min_value=0, max_value=8),
)
def test_corrupted_messages_raise_only_codec_errors(
    example: tuple[str, bytes], position: int, byte: int, cut: int
) -> None:
    """A valid message with one byte changed and its tail cut decodes or raises a CodecError."""
    name, data = example
    i = position % len(data)
    corrupted = data[:i] + bytes([byte]) + data[i + 1 :]
    _decode_or_codec_error(name, corrupted[: len(corrupted) - cut])


# --- Loading ------------------------------------------------------------------------------------


def test_schemas_dir_honours_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """HERALD_SCHEMAS_DIR overrides where schemas are loaded from."""
    monkeypatch.setenv(SCHEMAS_DIR_ENV, str(tmp_path))
    assert schemas_dir() == tmp_path
    monkeypatch.delenv(SCHEMAS_DIR_ENV)
    assert schemas_dir() == SCHEMAS


@pytest.mark.parametrize(
    "file_name, content",
    [
        ("UserSignal.avsc", None),
        ("Signal.v1.avsc", None),
        ("UserSignal.v1.avsc", "{not json"),
        (
            "UserSignal.v1.avsc",
            '{"type": "record", "name": "UserSignal", "fields": [{"name": "x", "type": "nope"}]}',
        ),
    ],
)
def test_bad_schema_files_fail_loading(tmp_path: Path, file_name: str, content: str | None) -> None:
    """Misnamed or invalid schema files stop loading with SchemaLoadError."""
    text = content if content is not None else (SCHEMAS / "UserSignal.v1.avsc").read_text()
    (tmp_path / file_name).write_text(text)
    with pytest.raises(SchemaLoadError):
        SchemaRegistry.from_directory(tmp_path)


def test_examples_are_not_mutated_by_codec(registry: SchemaRegistry) -> None:
    """Encoding leaves the caller's record untouched."""
    before = copy.deepcopy(FULL_EVENT)
    registry.encode("BusinessEvent", FULL_EVENT)
    assert before == FULL_EVENT


@pytest.mark.parametrize(
    ("name", "old"),
    [
        ("Suppression", next(r for n, r in EXAMPLES if n == "Suppression")),
        ("CandidateBatch", dict(EXAMPLES)["CandidateBatch"]),
    ],
    ids=["Suppression", "CandidateBatch"],
)
def test_records_written_by_the_shipped_v1_schemas_read_into_the_latest(
    registry: SchemaRegistry, name: str, old: dict[str, Any]
) -> None:
    """Bytes from a v1 writer of the repository still decode after v2 was added."""
    v1 = registry.versions(NS + name)[0]
    assert v1.version == 1 and registry.latest(NS + name).version >= 2
    record = copy.deepcopy(old)
    for candidate in record.get("candidates", []):
        candidate.pop("zones", None)  # v1 had neither
        candidate.pop("limited", None)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, v1.schema, record)
    decoded = registry.decode(name, v1.header + body.getvalue())
    for candidate in decoded.get("candidates", []):
        assert candidate.pop("zones") == []  # the v2 defaults
        assert candidate.pop("limited") is False
    assert decoded == record


# --- A record's last field written and read apart (CandidateBatch's event) ---------------------

_BATCHES = [record for name, record in EXAMPLES if name == "CandidateBatch"]


@pytest.mark.parametrize("record", _BATCHES)
def test_a_last_field_written_apart_gives_the_bytes_of_the_whole_record(
    registry: SchemaRegistry, record: dict[str, Any]
) -> None:
    """Other fields + the event written once and appended == the record written whole."""
    apart = LastFieldApart(registry, "CandidateBatch")
    rest = {k: v for k, v in record.items() if k != "event"}
    data = apart.encode(rest, apart.encode_last(record["event"]))
    assert data == registry.encode("CandidateBatch", record)
    assert apart.encode(rest, apart.encode_last(record["event"]), check=False) == data
    assert registry.decode("CandidateBatch", data) == registry.decode(
        "CandidateBatch", registry.encode("CandidateBatch", record)
    )


@pytest.mark.parametrize("record", _BATCHES)
def test_split_finds_the_last_fields_bytes_without_decoding_them(
    registry: SchemaRegistry, record: dict[str, Any]
) -> None:
    """split returns the other fields decoded and the event's bytes, which decode alone."""
    apart = LastFieldApart(registry, "CandidateBatch")
    whole = registry.decode("CandidateBatch", registry.encode("CandidateBatch", record))
    rest, last = apart.split(registry.encode("CandidateBatch", record))
    assert last == apart.encode_last(record["event"])
    assert apart.decode_last(last) == whole.pop("event")
    assert rest == whole


def test_split_refuses_what_another_version_wrote(registry: SchemaRegistry) -> None:
    """Bytes of an older CandidateBatch are not split (they decode whole instead)."""
    apart = LastFieldApart(registry, "CandidateBatch")
    older = registry.versions("CandidateBatch")[-2]
    body = io.BytesIO()
    fastavro.schemaless_writer(body, older.schema, _BATCHES[0])
    with pytest.raises(WrongRecordType):
        apart.split(older.header + body.getvalue())


def test_the_parts_of_a_bad_record_are_codec_errors_without_values(
    registry: SchemaRegistry,
) -> None:
    """Checks, truncation and trailing bytes fail with CodecErrors naming no value."""
    apart = LastFieldApart(registry, "CandidateBatch")
    record = _BATCHES[0]
    with pytest.raises(InvalidRecord) as bad_event:
        apart.encode_last({**record["event"], "occurred_at": 2**70})
    with pytest.raises(InvalidRecord) as bad_rest:
        apart.encode({"category": "NOT_A_CATEGORY"}, b"")
    with pytest.raises(InvalidRecord) as unchecked:  # fastavro still refuses it
        apart.encode({"category": "NOT_A_CATEGORY"}, b"", check=False)
    assert "NOT_A_CATEGORY" not in str(unchecked.value)
    assert "NOT_A_CATEGORY" not in str(bad_rest.value) and str(2**70) not in str(bad_event.value)
    data = registry.encode("CandidateBatch", record)
    _, last = apart.split(data)
    with pytest.raises(MalformedBody):
        apart.decode_last(last[:-3])
    with pytest.raises(MalformedBody):
        apart.decode_last(last + b"\x00")
    with pytest.raises(MalformedBody):
        apart.split(data[: HEADER_LENGTH + 2])


@settings(max_examples=300)
@given(body=st.binary(max_size=300))
def test_random_bytes_split_or_raise_codec_errors(body: bytes) -> None:
    """Whatever follows a CandidateBatch header, split and decode_last raise only CodecErrors."""
    apart = LastFieldApart(default_registry(), "CandidateBatch")
    try:
        _, last = apart.split(apart.version.header + body)
        apart.decode_last(last)
    except CodecError:
        pass


def test_fields_left_to_their_defaults_are_written_apart_as_whole(
    registry: SchemaRegistry,
) -> None:
    """A record that leaves defaulted fields out encodes apart as registry.encode does."""
    apart = LastFieldApart(registry, "CandidateBatch")
    record = copy.deepcopy(_BATCHES[0])
    del record["event"]["tags"]  # default []
    for c in record["candidates"]:
        del c["zones"]  # default []
    rest = {k: v for k, v in record.items() if k != "event"}
    assert apart.encode(rest, apart.encode_last(record["event"])) == registry.encode(
        "CandidateBatch", record
    )

"""Poison input at the ingest and decide stages: never a crash, always one dead letter.

Hypothesis throws random bytes, mutated single-object records (flips, inserts, deletions,
truncations, lying lengths), unknown fingerprints, records of the wrong type, records that
fit their schema but carry arbitrary values, oversized events and empty keys and values
at `Ingest.process` and `Decide.process`, always followed in the same batch by a valid
record. The properties: the stage returns; every record that is not a valid input yields
exactly one DeadLetter (stage decode or validate) carrying the original bytes, key and
origin, with an error that names no phone number of the input; and the valid record
after the bad ones is still processed. A catalogue test runs every named kind of poison
once, so each is covered on every run whatever hypothesis draws; it holds the one crash
this fuzzer found (`int-beyond-32-bits`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from pipeline import topics
from pipeline.codec import FINGERPRINT_LENGTH, HEADER_LENGTH, MAGIC, default_registry
from pipeline.domain import validate_event
from pipeline.domain.keys import DEVELOPMENT_SECRET, KeyMaker, message_id, subscriber_key
from pipeline.domain.models import DAY_MS, HOUR_MS, SubscriberState
from pipeline.metrics import build_metrics
from pipeline.policy import default_policy
from pipeline.streams import records
from pipeline.streams.reference import ReferenceData
from pipeline.streams.stages import MAX_RECORD_BYTES, Decide, Ingest, InRecord, OutRecord

NOW = 1_732_530_000_000
CODEC = default_registry()
POLICY = default_policy()
KEYS = KeyMaker(DEVELOPMENT_SECRET)
PARTITIONS = 6
CANDIDATES = topics.candidates_topic("herald")
BUSINESS = "garuda"
EVENT = "herald.v1.BusinessEvent"

# Valid numbers the poison carries; none of their digits may reach a dead letter's text.
ANA = "+34612345678"  # the sentinel's recipient: the valid record after the poison
BUDI = "+6281234567890"
TARGET = "+6281298765431"  # linked and opted in before the poison, which aims at them
PHONES = [BUDI, TARGET, "+919876543210", "+5511912345678", "+442079460958"]
# Each number whole and its national part (without the calling code).
FORBIDDEN = sorted(
    {p.lstrip("+") for p in [ANA, *PHONES]} | {p.lstrip("+")[2:] for p in [ANA, *PHONES]}
)
REGISTERED = {v.fingerprint for n in CODEC.names() for v in CODEC.versions(n)}
TEN_MB = 10 * 1024 * 1024
SENTINEL_OFFSET = 1_000
PRODUCER_MAX_REQUEST = 1_000_000  # faust's producer_max_request_size: nothing bigger is sent


class Clock:
    def __call__(self) -> int:
        return NOW


class States(dict[str, SubscriberState]):
    """TableStates' semantics: a missing subscriber is an empty state."""

    def __missing__(self, subscriber: str) -> SubscriberState:
        state = SubscriberState()
        super().__setitem__(subscriber, state)
        return state


class Poison:
    """One bad record; its repr stays short however big the bytes are."""

    def __init__(self, label: str, key: bytes | None, value: bytes | None) -> None:
        self.label, self.key, self.value = label, key, value

    def __repr__(self) -> str:
        size = "None" if self.value is None else f"{len(self.value)} bytes"
        head = "" if self.value is None else f" {self.value[:24]!r}"
        return f"Poison({self.label}, key={self.key!r:.40}, value={size}{head})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


def _ingest() -> Ingest:
    return Ingest(
        CODEC, KEYS, POLICY, PARTITIONS, CANDIDATES, Clock(), build_metrics(CollectorRegistry())
    )


def _decide() -> Decide:
    return Decide(CODEC, POLICY, CANDIDATES, Clock(), build_metrics(CollectorRegistry()))


def _key(phone: str) -> str:
    return subscriber_key(phone, DEVELOPMENT_SECRET)


# --- Valid records, the raw material of mutations ------------------------------------------


def _event(event_id: str, recipients: list[str], **overrides: Any) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "event_id": event_id,
        "business_id": BUSINESS,
        "kind": "SHIPMENT_UPDATE",
        "occurred_at": NOW - 60_000,
        "expires_at": NOW + DAY_MS,
        "recipients": recipients,
        "entity_id": "parcel-9",
        "entity_version": 3,
        "template": {"name": "parcel_status", "language": "id", "params": ["parcel 9"]},
        "tags": ["parcel"],
        "offer": None,
        "payload": (
            "herald.v1.ShipmentStatus",
            {"status": "OUT_FOR_DELIVERY", "location": "Jakarta", "eta": NOW + HOUR_MS},
        ),
    }
    wire.update(overrides)
    return wire


def _link(phone: str) -> dict[str, Any]:
    return {
        "subscriber": _key(phone),
        "wa_id": phone.lstrip("+"),
        "status": "ACTIVE",
        "locale": "id_ID",
        "timezone": "Asia/Jakarta",
        "country": "ID",
        "interests": ["travel"],
        "linked_accounts": {"instagram": "ig-123"},
        "updated_at": NOW - DAY_MS,
    }


def _signal(phone: str, kind: str = "OPT_IN", text: str | None = None) -> dict[str, Any]:
    return {
        "subscriber": _key(phone),
        "business_id": BUSINESS,
        "kind": kind,
        "scope": "ALL",
        "text": text,
        "source": "settings",
        "consent_version": "v3",
        "occurred_at": NOW - DAY_MS,
    }


def _candidate_batch(event: dict[str, Any], offset: int = 7) -> bytes:
    """The CandidateBatch ingest makes of an event (its first one)."""
    src = InRecord(topics.BUSINESS_EVENTS, 0, offset, BUSINESS.encode(), CODEC.encode(EVENT, event))
    out = [r for r in _ingest().process([src]) if r.topic == CANDIDATES]
    assert out, "the event must yield a candidate batch"
    return out[0].value


PAYLOADS: dict[str, st.SearchStrategy[Any]] = {
    "SHIPMENT_UPDATE": st.builds(
        lambda s, loc: ("herald.v1.ShipmentStatus", {"status": s, "location": loc, "eta": None}),
        st.text(max_size=12),
        st.none() | st.text(max_size=12),
    ),
    "FLIGHT_DELAY": st.builds(
        lambda f, d: (
            "herald.v1.FlightDelay",
            {"flight": f, "delay_minutes": d, "new_departure": NOW + HOUR_MS, "gate": None},
        ),
        st.text(max_size=8),
        st.integers(0, 600),
    ),
    "ONE_TIME_PASSCODE": st.builds(
        lambda t: ("herald.v1.Passcode", {"ttl_seconds": t}), st.integers(30, 600)
    ),
    "PROMOTION": st.builds(
        lambda c: ("herald.v1.Promotion", {"campaign_id": c}), st.text(max_size=12)
    ),
    "SERVICE_UPDATE": st.builds(
        lambda s: ("herald.v1.ServiceUpdate", {"service": s, "status": "DEGRADED"}),
        st.text(max_size=12),
    ),
}


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    """A BusinessEvent the current policy accepts (recipients may still fail to parse)."""
    kind = draw(st.sampled_from(sorted(PAYLOADS)))
    recipients = draw(
        st.lists(st.sampled_from([*PHONES, "+999 7654321098", "not a number"]), min_size=1,
                 max_size=6)
    )  # fmt: skip
    params = draw(st.lists(st.sampled_from(PHONES) | st.text(max_size=15), max_size=3))
    return _event(
        draw(st.text(min_size=1, max_size=12).filter(str.strip)),
        recipients,
        kind=kind,
        template={"name": "t", "language": "id", "params": params},
        tags=draw(st.lists(st.text(max_size=8), max_size=3)),
        payload=draw(PAYLOADS[kind]),
    )


# --- Records that fit their schema, with values nobody checked ------------------------------

INTERESTING_TEXT = [
    *PHONES,
    "",
    " ",
    "+1",
    "Asia/Jakarta",
    "Etc/Unknown",
    "Mars/Olympus",
    "../x",
    "ID",
    "STOP ALL",
    "http://phish.example/x",
    "\x00",
    "\U0001f600" * 3,
]
INTERESTING_LONGS = [
    0,
    -1,
    1,
    NOW,
    NOW - DAY_MS,
    NOW + HOUR_MS,
    2**63 - 1,
    -(2**63),
    253_402_300_799_999,
    253_402_300_800_000,
]
PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.sampled_from(INTERESTING_LONGS)
    | st.integers(NOW - 30 * DAY_MS, NOW + 30 * DAY_MS)
    | st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(allow_nan=False, width=32),
    "double": st.floats(),
    "bytes": st.binary(max_size=16),
    "string": st.sampled_from(INTERESTING_TEXT) | st.text(max_size=16),
}


def _named(schema: Any) -> str | None:
    if isinstance(schema, dict) and schema.get("type") in ("record", "enum", "fixed"):
        return str(schema["name"])
    return None


def from_schema(schema: Any, named: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Values of a fastavro-parsed schema, in the shape `SchemaRegistry.encode` takes."""
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return PRIMITIVES[schema]
        return st.deferred(lambda: named[schema])
    if isinstance(schema, list):
        records_in_union = sum(1 for b in schema if _named(b) is not None)
        branches = []
        for branch in schema:
            values = from_schema(branch, named)
            name = _named(branch)
            if records_in_union > 1 and name is not None:  # fastavro's tuple notation
                values = values.map(functools.partial(lambda n, v: (n, v), name))
            branches.append(values)
        return st.one_of(branches)
    kind = schema["type"]
    if kind == "record":
        fields = {f["name"]: from_schema(f["type"], named) for f in schema["fields"]}
        named[schema["name"]] = strategy = st.fixed_dictionaries(fields)
        return strategy
    if kind == "enum":
        named[schema["name"]] = strategy = st.sampled_from(schema["symbols"])
        return strategy
    if kind == "array":
        return st.lists(from_schema(schema["items"], named), max_size=4)
    if kind == "map":
        return st.dictionaries(
            st.text(max_size=8), from_schema(schema["values"], named), max_size=3
        )
    return from_schema(kind, named)


@st.composite
def schema_valid(draw: st.DrawFn, record: str) -> tuple[bytes | None, bytes]:
    """(key, value) of a `record` that decodes fine and carries arbitrary values.

    Half of them are aimed at TARGET, whom the decide batch links and opts in first, so
    that the values reach the rules past "no account"; links and signals are mostly keyed
    by their own subscriber, so they reach the state.
    """
    full = f"herald.v1.{record}"
    wire = draw(from_schema(CODEC.latest(full).schema, {}))
    aim = draw(st.booleans())
    if aim and record in ("AccountLink", "UserSignal"):
        wire["subscriber"] = _key(TARGET)
    if aim and record == "UserSignal":
        wire["business_id"] = BUSINESS
    if aim and record == "CandidateBatch":
        wire["event"]["business_id"] = BUSINESS
        if draw(st.booleans()):
            wire["event"]["expires_at"] = None
        for c in wire["candidates"]:
            c["subscriber"], c["limited"] = _key(TARGET), False
    value = CODEC.encode(full, wire)
    own_key = draw(st.booleans()) and record in ("AccountLink", "UserSignal")
    return (wire["subscriber"].encode() if own_key else draw(keys)), value


# --- Mutations of valid bytes ---------------------------------------------------------------

# Numbers that lie: zig-zag varints for -1, 2**31, 2**62 and 2**63 - 1, and a varint that never
# ends. In place of a one-byte length they claim huge strings and arrays; in place of an
# Avro `int` they hold more than 32 bits (fastavro reads those without complaint).
LYING_VARINTS = [b"\x01", b"\x80\x80\x80\x80\x10", b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
                 b"\xff" * 12, b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01"]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, value: bytes) -> bytes:
    """Apply one to three flips, inserts, deletions, truncations or lying numbers to `value`."""
    data = bytearray(value)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "lie"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[at:]
        elif op == "lie":
            data[at : at + 1] = draw(st.sampled_from(LYING_VARINTS))
    return bytes(data)


def _with_fingerprint(value: bytes, fingerprint: bytes) -> bytes:
    return MAGIC + fingerprint + value[HEADER_LENGTH:]


unknown_fingerprints = st.binary(min_size=FINGERPRINT_LENGTH, max_size=FINGERPRINT_LENGTH).filter(
    lambda fp: fp not in REGISTERED
)

# --- The catalogue: every named kind of poison, built once -----------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "{}" + "]" * depth


@functools.cache
def _other_records() -> dict[str, bytes]:
    """One valid record of every type, for putting on a topic that expects another."""
    event = _event("wrong-type", [BUDI])
    batch = _candidate_batch(event)
    decide_in = [
        InRecord(topics.ACCOUNT_LINKS, 0, 0, _key(BUDI).encode(),
                 CODEC.encode("herald.v1.AccountLink", _link(BUDI))),
        InRecord(topics.USER_SIGNALS, 0, 1, _key(BUDI).encode(),
                 CODEC.encode("herald.v1.UserSignal", _signal(BUDI))),
        InRecord(CANDIDATES, 0, 2, BUSINESS.encode(), batch),
    ]  # fmt: skip
    delivery = _decide().process(decide_in, States())[0].value
    no_account = _candidate_batch(_event("no-account", [PHONES[1]]))
    suppression = _decide().process([InRecord(CANDIDATES, 0, 3, b"k", no_account)], States())
    dead = _ingest().process([InRecord(topics.BUSINESS_EVENTS, 0, 0, b"k", b"junk")])[0].value
    return {
        "BusinessEvent": CODEC.encode(EVENT, event),
        "AccountLink": decide_in[0].value or b"",
        "UserSignal": decide_in[1].value or b"",
        "CandidateBatch": batch,
        "Delivery": delivery,
        "Suppression": suppression[0].value,
        "DeadLetter": dead,
        "BusinessProfile": CODEC.encode(
            "herald.v1.BusinessProfile",
            {
                "business_id": BUSINESS,
                "tier": "TIER_1",
                "verified": True,
                "status": "ACTIVE",
                "reason": None,
                "updated_at": NOW,
            },
        ),
        "LinkReputation": CODEC.encode(
            "herald.v1.LinkReputation",
            {"domain": "phish.example", "verdict": "BLOCKED", "source": "t", "updated_at": NOW},
        ),
    }


REFERENCE_RECORD = {
    topics.BUSINESS_PROFILES: "BusinessProfile",
    topics.LINK_REPUTATION: "LinkReputation",
}
RECORD_ON = {
    topics.BUSINESS_EVENTS: "BusinessEvent",
    topics.ACCOUNT_LINKS: "AccountLink",
    topics.USER_SIGNALS: "UserSignal",
    CANDIDATES: "CandidateBatch",
}


def _oversized() -> dict[str, Callable[[], bytes]]:
    """Events past every size limit, and big ones no limit speaks of (built on demand)."""
    max_recipients = POLICY.max_recipients_per_event
    cases: dict[str, Callable[[], bytes]] = {
        "too-many-recipients": lambda: CODEC.encode(
            EVENT, _event("big", [PHONES[i % len(PHONES)] for i in range(max_recipients + 1)])
        ),
        "far-too-many-recipients": lambda: CODEC.encode(
            EVENT, _event("big", [f"+62812{i:08d}" for i in range(5 * max_recipients)])
        ),
        "param-far-too-long": lambda: CODEC.encode(
            EVENT,
            _event(
                "p",
                [BUDI],
                template={
                    "name": "t",
                    "language": "id",
                    "params": ["x", BUDI * (20 * POLICY.max_param_length)],
                },
            ),
        ),
        "passcode-param-too-long": lambda: CODEC.encode(
            EVENT,
            _event(
                "otp",
                [BUDI],
                kind="ONE_TIME_PASSCODE",
                entity_id=None,
                entity_version=None,
                template={"name": "otp", "language": "en", "params": [f"code for {BUDI}"]},
                payload=("herald.v1.Passcode", {"ttl_seconds": 300}),
            ),
        ),
        "ten-mb-garbage": lambda: bytes(range(256)) * (TEN_MB // 256),
        "ten-mb-unknown-fingerprint": lambda: MAGIC + b"\xee" * 8 + b"\x00" * TEN_MB,
        "ten-mb-recipient": lambda: CODEC.encode(EVENT, _event("big", [BUDI * (TEN_MB // 14)])),
        "ten-mb-too-many-recipients": lambda: CODEC.encode(
            EVENT, _event("big", [BUDI * 100] * (max_recipients + 1))
        ),
        "huge-payload-string-and-nesting": lambda: CODEC.encode(
            EVENT,
            _event(
                "nest",
                [BUDI] * 2,
                occurred_at=NOW + DAY_MS,
                payload=(
                    "herald.v1.ShipmentStatus",
                    {"status": _nested(100_000), "location": "x" * 1_000_000, "eta": None},
                ),
            ),
        ),
        "huge-arrays-and-future": lambda: CODEC.encode(
            EVENT,
            _event(
                "arr",
                [BUDI],
                occurred_at=NOW + DAY_MS,
                tags=["t"] * 200_000,
                template={"name": "t", "language": "id", "params": ["p"] * 200_000},
            ),
        ),
        "claims-huge-string": lambda: MAGIC + CODEC.latest(EVENT).fingerprint + LYING_VARINTS[2],
        "claims-huge-array": lambda: _lying_recipients(),
        "big-payload-within-limit": lambda: CODEC.encode(
            EVENT,
            _event(
                "big",
                [BUDI],
                payload=("herald.v1.ServiceUpdate", {"service": "x" * 800_000, "status": "UP"}),
            ),
        ),
        "varint-never-ends": lambda: MAGIC + CODEC.latest(EVENT).fingerprint + b"\xff" * 100_000,
        "int-beyond-32-bits": _int_beyond_32_bits,
    }
    return cases


def _int_beyond_32_bits() -> bytes:
    """A passcode event whose Avro `int` ttl holds 2**32: fastavro reads it, encode refuses it.

    Found by this fuzzer: ingest validated the event, then failed to encode its candidate
    batch and raised, stopping the agent on the same record after every restart.
    """
    otp = _event("otp", [BUDI], kind="ONE_TIME_PASSCODE", entity_id=None, entity_version=None,
                 template={"name": "otp", "language": "en", "params": ["123456"]},
                 payload=("herald.v1.Passcode", {"ttl_seconds": 300}))  # fmt: skip
    value = CODEC.encode(EVENT, otp)
    at = value.rindex(b"\xd8\x04")  # 300, zig-zag varint
    return value[:at] + b"\x80\x80\x80\x80\x20" + value[at + 2 :]


def _lying_recipients() -> bytes:
    """An event whose recipients array claims 2**62 items and holds one."""
    value = CODEC.encode(EVENT, _event("lie", [BUDI]))
    one_item = b"\x02" + bytes([2 * len(BUDI)]) + BUDI.encode() + b"\x00"
    at = value.index(one_item)
    return value[:at] + LYING_VARINTS[2] + value[at + 1 :]


OVERSIZED = _oversized()


@functools.cache
def _catalogue_value(name: str) -> bytes | None:
    if name in OVERSIZED:
        return OVERSIZED[name]()
    simple: dict[str, bytes | None] = {
        "none": None,
        "empty": b"",
        "magic-only": MAGIC,
        "header-only": MAGIC + CODEC.latest(EVENT).fingerprint,
        "garbage-with-phone": f"not avro {BUDI}".encode(),
        "unknown-fingerprint": _with_fingerprint(
            CODEC.encode(EVENT, _event("e", [BUDI])), b"\x01\x02\x03\x04\x05\x06\x07\x08"
        ),
        "trailing-bytes": CODEC.encode(EVENT, _event("e", [BUDI])) + b"\x00",
        "truncated": CODEC.encode(EVENT, _event("e", [BUDI]))[:-3],
        "no-recipients": CODEC.encode(EVENT, _event("e", [])),
        "empty-event-id": CODEC.encode(EVENT, _event(" ", [BUDI])),
        "expires-before-occurring": CODEC.encode(
            EVENT, _event("e", [BUDI], expires_at=NOW - 2 * HOUR_MS)
        ),
    }
    return simple[name]


CATALOGUE = [
    "none", "empty", "magic-only", "header-only", "garbage-with-phone", "unknown-fingerprint",
    "trailing-bytes", "truncated", "no-recipients", "empty-event-id", "expires-before-occurring",
    *OVERSIZED,
]  # fmt: skip

# --- Strategies of poison -------------------------------------------------------------------

keys = st.sampled_from([None, b"", BUSINESS.encode(), BUDI.encode()]) | st.binary(max_size=16)


def poison_for(topic: str) -> st.SearchStrategy[Poison]:
    """Bad records for one topic: every kind the module docstring lists."""
    own = RECORD_ON[topic]

    def of(label: str, values: st.SearchStrategy[bytes | None]) -> st.SearchStrategy[Poison]:
        return st.builds(Poison, st.just(label), keys, values)

    own_valid: st.SearchStrategy[bytes]
    if topic == topics.BUSINESS_EVENTS:
        own_valid = valid_events().map(lambda e: CODEC.encode(EVENT, e))
    else:
        own_valid = st.just(_other_records()[own])
    return st.one_of(
        schema_valid_poison(own),
        of("random", st.binary(max_size=300)),
        of("random-after-magic", st.binary(max_size=300).map(MAGIC.__add__)),
        of("mutated", own_valid.flatmap(mutated)),
        of("unknown-fingerprint",
           st.tuples(own_valid, unknown_fingerprints).map(lambda t: _with_fingerprint(*t))),
        of("wrong-type",
           st.sampled_from(sorted(set(_other_records()) - {own})).map(_other_records().get)),
        of("empty", st.sampled_from([None, b""])),
        of("catalogue", st.sampled_from(CATALOGUE).map(_catalogue_value)),
    )  # fmt: skip


def schema_valid_poison(record: str) -> st.SearchStrategy[Poison]:
    """Decodable records of `record` with arbitrary values (see schema_valid)."""
    return schema_valid(record).map(lambda kv: Poison("schema-valid", *kv))


# --- The properties -------------------------------------------------------------------------


def _is_valid_event(value: bytes | None) -> bool:
    """The oracle: does this value decode, fit the schema and validate as a BusinessEvent?"""
    if len(value or b"") > MAX_RECORD_BYTES:
        return False
    try:
        wire = CODEC.decode(EVENT, value or b"")
        CODEC.encode(EVENT, wire)  # fastavro reads an `int` of 33+ bits; the schema does not
        validate_event(records.event_from_wire(wire), POLICY, NOW)
    except Exception:
        return False
    return True


def _is_readable(topic: str, key: bytes | None, value: bytes | None) -> bool:
    """The oracle for decide inputs: does the record decode, and is it keyed right?"""
    try:
        record = CODEC.decode(f"herald.v1.{RECORD_ON[topic]}", value or b"")
        if topic == CANDIDATES:
            records.candidates_from_wire(record)
            return True
        if topic == topics.ACCOUNT_LINKS:
            records.account_link_from_wire(record)
        else:
            records.signal_from_wire(record)
        return key is not None and key.decode(errors="replace") == record["subscriber"]
    except Exception:
        return False


def _in_records(topic: str, poison: list[Poison]) -> list[InRecord]:
    return [InRecord(topic, 3, i, p.key, p.value) for i, p in enumerate(poison)]


def _dead_letters(out: list[OutRecord]) -> dict[str, list[tuple[OutRecord, dict[str, Any]]]]:
    by_id: dict[str, list[tuple[OutRecord, dict[str, Any]]]] = {}
    for r in out:
        # A bigger record fails to send, and the agent stops on the same input again and
        # again (a 1.5 MB record on business-events did so before the limit).
        assert len(r.value) + len(r.key or b"") < PRODUCER_MAX_REQUEST, "too big to send"
        if r.topic == topics.DEAD_LETTERS:
            d = CODEC.decode("herald.v1.DeadLetter", r.value)
            by_id.setdefault(d["dead_letter_id"], []).append((r, d))
    return by_id


def _check_dead_letter(src: InRecord, record: OutRecord, d: dict[str, Any]) -> None:
    assert record.partition is None
    if len(src.value or b"") + len(src.key or b"") <= MAX_RECORD_BYTES:
        assert record.key == src.key
        assert (d["key"], d["value"]) == (src.key, src.value or b""), "original bytes, unchanged"
    else:  # too big to send on: where it is, not what it is
        assert d["value"] == b"" and "not kept" in d["error_message"]
    assert (d["source_topic"], d["source_partition"], d["source_offset"]) == (
        src.topic,
        src.partition,
        src.offset,
    )
    assert d["stage"] in ("decode", "validate")
    assert d["error_type"] and d["error_message"]
    assert (d["failed_at"], d["replay_count"]) == (NOW, 0)
    text = " ".join(str(d[f]) for f in ("dead_letter_id", "stage", "error_type", "error_message"))
    leaked = [digits for digits in FORBIDDEN if digits in text]
    assert not leaked, f"phone digits in a dead letter: {d['error_type']}"


def check_ingest(poison: list[Poison]) -> None:
    batch = _in_records(topics.BUSINESS_EVENTS, poison)
    sentinel = CODEC.encode(EVENT, _event("sentinel", [ANA]))
    batch.append(InRecord(topics.BUSINESS_EVENTS, 3, SENTINEL_OFFSET, b"k", sentinel))

    out = _ingest().process(batch)  # must not raise

    dead = _dead_letters(out)
    for src in batch[:-1]:
        letters = dead.pop(f"{src.topic}/{src.partition}/{src.offset}", [])
        if _is_valid_event(src.value):
            assert letters == [], "a valid event is not a dead letter"
            continue
        assert len(letters) == 1, f"{len(letters)} dead letters for one bad record"
        _check_dead_letter(src, *letters[0])
    assert dead == {}, "a dead letter for a record nobody sent"
    batches = [
        CODEC.decode("herald.v1.CandidateBatch", r.value) for r in out if r.topic == CANDIDATES
    ]
    after = [b for b in batches if b["source_offset"] == SENTINEL_OFFSET]
    assert [b["event"]["event_id"] for b in after] == ["sentinel"], (
        "the valid event after the poison is still processed"
    )
    assert [c["subscriber"] for c in after[0]["candidates"]] == [_key(ANA)]


def check_decide(topic: str, poison: list[Poison]) -> None:
    target = _key(TARGET).encode()
    batch = [
        InRecord(topics.ACCOUNT_LINKS, 1, SENTINEL_OFFSET - 2, target,
                 CODEC.encode("herald.v1.AccountLink", _link(TARGET))),
        InRecord(topics.USER_SIGNALS, 1, SENTINEL_OFFSET - 2, target,
                 CODEC.encode("herald.v1.UserSignal", _signal(TARGET))),
    ]  # fmt: skip
    batch += _in_records(topic, poison)
    ana = _key(ANA).encode()
    sentinel = _candidate_batch(_event("sentinel", [ANA]), offset=SENTINEL_OFFSET)
    batch += [
        InRecord(topics.ACCOUNT_LINKS, 1, SENTINEL_OFFSET, ana,
                 CODEC.encode("herald.v1.AccountLink", _link(ANA))),
        InRecord(topics.USER_SIGNALS, 1, SENTINEL_OFFSET, ana,
                 CODEC.encode("herald.v1.UserSignal", _signal(ANA))),
        InRecord(CANDIDATES, 1, SENTINEL_OFFSET, BUSINESS.encode(), sentinel),
    ]  # fmt: skip

    out = _decide().process(batch, States())  # must not raise

    dead = _dead_letters(out)
    for src in batch[2 : 2 + len(poison)]:
        letters = dead.pop(f"{src.topic}/{src.partition}/{src.offset}", [])
        if _is_readable(src.topic, src.key, src.value):
            # A readable record is normally used; one the policy cannot decide becomes a
            # dead letter too (never two, never an exception).
            assert len(letters) <= 1
        else:
            assert len(letters) == 1, f"{len(letters)} dead letters for one bad record"
        for letter in letters:
            _check_dead_letter(src, *letter)
    assert dead == {}, "a dead letter for a record nobody sent"
    deliveries = [
        CODEC.decode("herald.v1.Delivery", r.value) for r in out if r.topic == topics.DELIVERIES
    ]
    sentinel_id = message_id("sentinel", _key(ANA))
    assert [d["message_id"] for d in deliveries if d["event_id"] == "sentinel"] == [sentinel_id], (
        "the valid candidate after the poison is still decided"
    )


FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(st.lists(poison_for(topics.BUSINESS_EVENTS), min_size=1, max_size=4))
def test_ingest_survives_poison_and_dead_letters_each_bad_record(poison: list[Poison]) -> None:
    """Ingest never raises on bad input: one dead letter per bad record, valid work goes on."""
    check_ingest(poison)


@FUZZ
@given(
    st.sampled_from([CANDIDATES, topics.ACCOUNT_LINKS, topics.USER_SIGNALS]).flatmap(
        lambda t: st.tuples(st.just(t), st.lists(poison_for(t), min_size=1, max_size=4))
    )
)
def test_decide_survives_poison_and_dead_letters_each_bad_record(
    case: tuple[str, list[Poison]],
) -> None:
    """Decide never raises on bad input on any of its topics; valid candidates still decided."""
    check_decide(*case)


@pytest.mark.parametrize("name", CATALOGUE)
def test_every_named_poison_is_one_dead_letter_at_ingest(name: str) -> None:
    """Each catalogued kind of poison (oversized, lying, empty...) is handled at ingest."""
    value = _catalogue_value(name)
    check_ingest([Poison(name, None, value), Poison(name, BUSINESS.encode(), value)])
    big_and_valid = name in ("big-payload-within-limit",)
    assert big_and_valid or not _is_valid_event(value), "catalogue entries are all invalid"


WRONG_TYPES = [
    (topic, other)
    for topic in (CANDIDATES, topics.ACCOUNT_LINKS, topics.USER_SIGNALS)
    for other in sorted(_other_records())
    if other != RECORD_ON[topic]
]


@pytest.mark.parametrize(("topic", "other"), WRONG_TYPES)
def test_wrong_record_type_on_each_decide_topic_is_a_dead_letter(topic: str, other: str) -> None:
    """A record of another type on a decide topic is one decode dead letter, nothing else."""
    value = _other_records()[other]
    check_decide(topic, [Poison(other, b"k", value), Poison(other, None, value)])


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(topics.REFERENCE_TOPICS),
    st.one_of(
        st.none(),
        st.binary(max_size=200),
        st.sampled_from(sorted(_other_records())).map(_other_records().get).flatmap(mutated),
    ),
)
def test_reference_data_skips_what_it_cannot_read(topic: str, value: bytes | None) -> None:
    """business-profiles and link-reputation readers never raise on bad bytes."""
    reference = ReferenceData(POLICY, CODEC)
    reference.apply(topic, value)
    reference.apply(topic, _other_records()[REFERENCE_RECORD[topic]])
    assert reference.policy is not None

"""The ingest and decide stages over real Avro bytes: fan-out, outcomes, dead letters, metrics."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import fastavro
import pytest
from prometheus_client import CollectorRegistry

from pipeline import topics
from pipeline.codec import MAGIC, SchemaRegistry, default_registry
from pipeline.codec.avro import schemas_dir
from pipeline.domain.keys import DEVELOPMENT_SECRET, KeyMaker, message_id, subscriber_key
from pipeline.domain.models import DAY_MS, HOUR_MS, SubscriberState
from pipeline.metrics import Metrics, build_metrics
from pipeline.policy import default_policy
from pipeline.simulate import Scenario, build_traffic, encoded
from pipeline.streams.stages import (
    Decide,
    Ingest,
    InRecord,
    OutRecord,
    bundle_candidates,
    partition_for,
)

NOW = 1_732_530_000_000
DECIDE_INPUTS = (topics.ACCOUNT_LINKS, topics.USER_SIGNALS)
CODEC = default_registry()
POLICY = default_policy()
KEYS = KeyMaker(DEVELOPMENT_SECRET)
PARTITIONS = 6
CANDIDATES = topics.candidates_topic("herald")
CANDIDATE_BATCH = "herald.v1.CandidateBatch"
BUSINESS = "garuda"

# Valid numbers, several spellings of the same two people, and one that cannot parse.
ANA = "+34612345678"
BUDI = "+6281234567890"
BUDI_DIGITS = "6281234567890"
OTHERS = ["+12015550123", "+919876543210", "+5511912345678", "+442079460958"]
BAD = "+999 7654321098"
BAD_DIGITS = "9997654321098"


def _key(e164: str) -> str:
    return subscriber_key(e164, DEVELOPMENT_SECRET)


class States(dict[str, SubscriberState]):
    """An in-memory state store with TableStates' semantics: a missing subscriber is empty."""

    def __missing__(self, subscriber: str) -> SubscriberState:
        state = SubscriberState()
        super().__setitem__(subscriber, state)
        return state


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def metrics() -> Metrics:
    return build_metrics(CollectorRegistry())


def _ingest(metrics: Metrics, clock: Clock | None = None) -> Ingest:
    return Ingest(CODEC, KEYS, POLICY, PARTITIONS, CANDIDATES, clock or Clock(), metrics)


def _decide(metrics: Metrics, clock: Clock | None = None) -> Decide:
    return Decide(CODEC, POLICY, CANDIDATES, clock or Clock(), metrics)


def _event(recipients: list[str], **overrides: Any) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "event_id": "evt-1",
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


def _event_record(wire: dict[str, Any], offset: int = 41) -> InRecord:
    value = CODEC.encode("herald.v1.BusinessEvent", wire)
    return InRecord(topics.BUSINESS_EVENTS, 2, offset, BUSINESS.encode(), value)


def _link(
    subscriber: str,
    wa_id: str,
    *,
    status: str = "ACTIVE",
    at: int = NOW - DAY_MS,
    key: bytes | None = None,
    offset: int = 0,
) -> InRecord:
    wire = {
        "subscriber": subscriber,
        "wa_id": wa_id,
        "status": status,
        "locale": "id_ID",
        "timezone": "Asia/Jakarta",
        "country": "ID",
        "interests": ["travel"],
        "linked_accounts": {"instagram": "ig-123"},
        "updated_at": at,
    }
    value = CODEC.encode("herald.v1.AccountLink", wire)
    k = subscriber.encode() if key is None else key
    return InRecord(topics.ACCOUNT_LINKS, 0, offset, k, value)


def _signal(
    subscriber: str,
    kind: str = "OPT_IN",
    *,
    business: str | None = BUSINESS,
    at: int = NOW - DAY_MS,
    key: bytes | None = None,
    offset: int = 0,
) -> InRecord:
    wire = {
        "subscriber": subscriber,
        "business_id": business,
        "kind": kind,
        "scope": "ALL",
        "text": None,
        "source": "settings",
        "consent_version": "v3",
        "occurred_at": at,
    }
    value = CODEC.encode("herald.v1.UserSignal", wire)
    k = subscriber.encode() if key is None else key
    return InRecord(topics.USER_SIGNALS, 0, offset, k, value)


def _as_input(out: OutRecord, offset: int = 0) -> InRecord:
    """Turn an ingest output into what the decide agent consumes from its partition."""
    assert out.partition is not None
    return InRecord(out.topic, out.partition, offset, out.key, out.value)


def _of(out: list[OutRecord], topic: str, record: str) -> list[dict[str, Any]]:
    return [CODEC.decode(record, r.value) for r in out if r.topic == topic]


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


# --- Ingest ---------------------------------------------------------------------------------


def test_partition_for_matches_kafka_default_partitioner() -> None:
    """partition_for places keys where Java's murmur2 partitioner does (Kafka's own vectors)."""
    java_murmur2 = {
        "21": -973932308,
        "foobar": -790332482,
        "abc": 479470107,
        "a-little-bit-long-string": -985981536,
    }
    for key, hashed in java_murmur2.items():
        for partitions in (1, 3, 6, 7, 12):
            assert partition_for(key, partitions) == (hashed & 0x7FFFFFFF) % partitions


def test_event_fans_out_into_batches_on_each_subscribers_partition(metrics: Metrics) -> None:
    """Every distinct valid recipient lands once, in a batch on its subscriber's partition."""
    recipients = [ANA, BUDI, *OTHERS, "+34 612 345 678", "+62 812-3456-7890"]
    out = _ingest(metrics).process([_event_record(_event(recipients))])

    assert {r.topic for r in out} == {CANDIDATES}
    partitions = [r.partition for r in out]
    assert len(partitions) == len(set(partitions)), "one batch per event and partition"
    assert len(set(partitions)) > 1, "the example must span several partitions"
    seen: list[tuple[int, str, str]] = []
    for r in out:
        batch = CODEC.decode("herald.v1.CandidateBatch", r.value)
        assert r.key == BUSINESS.encode()
        assert batch["event"]["recipients"] == [], "raw numbers stay in business-events"
        assert batch["event"]["event_id"] == "evt-1"
        assert batch["category"] == "UTILITY"
        assert (batch["source_topic"], batch["source_partition"], batch["source_offset"]) == (
            topics.BUSINESS_EVENTS,
            2,
            41,
        )
        for c in batch["candidates"]:
            assert r.partition == partition_for(c["subscriber"], PARTITIONS)
            seen.append((c["recipient_index"], c["subscriber"], c["region"]))
        assert BUDI_DIGITS.encode() not in r.value

    expected = [
        (0, _key(ANA), "ES"),
        (1, _key(BUDI), "ID"),
        (2, _key(OTHERS[0]), "US"),
        (3, _key(OTHERS[1]), "IN"),
        (4, _key(OTHERS[2]), "BR"),
        (5, _key(OTHERS[3]), "GB"),
    ]
    assert sorted(seen) == expected, "each distinct recipient exactly once, under its first index"


def test_invalid_number_becomes_an_invalid_recipient_suppression(metrics: Metrics) -> None:
    """A number that does not parse gets an INVALID_RECIPIENT suppression with no digit of it."""
    out = _ingest(metrics).process([_event_record(_event([ANA, BAD]))])

    suppressions = [r for r in out if r.topic == topics.SUPPRESSIONS]
    assert len(suppressions) == 1
    (record,) = suppressions
    s = CODEC.decode("herald.v1.Suppression", record.value)
    expected_subscriber = subscriber_key(BAD.strip(), DEVELOPMENT_SECRET)
    assert s["subscriber"] == expected_subscriber
    assert record.key == expected_subscriber.encode()
    assert s["reason"] == "INVALID_RECIPIENT"
    assert s["recipient_index"] == 1
    assert s["message_id"] == message_id("evt-1", expected_subscriber)
    assert (s["event_id"], s["business_id"], s["category"]) == ("evt-1", BUSINESS, "UTILITY")
    assert (s["decided_at"], s["policy_version"]) == (NOW, POLICY.version)
    assert not any(ch.isdigit() for ch in s["detail"])
    assert BAD_DIGITS not in s["subscriber"]
    assert BAD_DIGITS.encode() not in record.value
    candidates = [
        c
        for r in out
        if r.topic == CANDIDATES
        for c in CODEC.decode("herald.v1.CandidateBatch", r.value)["candidates"]
    ]
    assert [c["recipient_index"] for c in candidates] == [0]
    assert (
        _sample(
            metrics, "herald_suppressions_total", reason="INVALID_RECIPIENT", category="UTILITY"
        )
        == 1
    )


def _garbage() -> bytes:
    return f"not avro {BUDI_DIGITS}".encode()


def _unknown_fingerprint() -> bytes:
    body = CODEC.encode("herald.v1.BusinessEvent", _event([BUDI]))[10:]
    return MAGIC + b"\x01\x02\x03\x04\x05\x06\x07\x08" + body


def _wrong_type() -> bytes:
    return _link(_key(BUDI), BUDI_DIGITS).value or b""


def _truncated() -> bytes:
    return CODEC.encode("herald.v1.BusinessEvent", _event([BUDI]))[:-7]


@pytest.mark.parametrize(
    ("value", "error_type"),
    [
        (_garbage(), "NotSingleObjectEncoded"),
        (_unknown_fingerprint(), "UnknownFingerprint"),
        (_wrong_type(), "WrongRecordType"),
        (_truncated(), "MalformedBody"),
    ],
    ids=["garbage", "unknown-fingerprint", "wrong-type", "truncated"],
)
def test_unreadable_event_is_one_dead_letter(
    metrics: Metrics, value: bytes, error_type: str
) -> None:
    """Bytes that do not decode as a BusinessEvent go whole to dead-letters, stage decode."""
    src = InRecord(topics.BUSINESS_EVENTS, 4, 977, b"some-key", value)
    out = _ingest(metrics).process([src])

    assert len(out) == 1
    (record,) = out
    assert (record.topic, record.key, record.partition) == (topics.DEAD_LETTERS, b"some-key", None)
    d = CODEC.decode("herald.v1.DeadLetter", record.value)
    assert d["value"] == value
    assert d["key"] == b"some-key"
    assert (d["source_topic"], d["source_partition"], d["source_offset"]) == (
        topics.BUSINESS_EVENTS,
        4,
        977,
    )
    assert d["dead_letter_id"] == f"{topics.BUSINESS_EVENTS}/4/977"
    assert (d["stage"], d["error_type"]) == ("decode", error_type)
    assert (d["failed_at"], d["replay_count"]) == (NOW, 0)
    assert BUDI_DIGITS not in d["error_message"]
    assert _sample(metrics, "herald_dead_letters_total", stage="decode", error_type=error_type) == 1


def test_tombstone_on_business_events_is_a_dead_letter(metrics: Metrics) -> None:
    """A record without a value is a decode dead letter carrying empty bytes, not a crash."""
    out = _ingest(metrics).process([InRecord(topics.BUSINESS_EVENTS, 0, 5, b"k", None)])

    assert [r.topic for r in out] == [topics.DEAD_LETTERS]
    d = CODEC.decode("herald.v1.DeadLetter", out[0].value)
    assert (d["stage"], d["value"], d["source_offset"]) == ("decode", b"", 5)


@pytest.mark.parametrize(
    "overrides",
    [
        {"recipients": []},
        {"recipients": [BUDI] * (POLICY.max_recipients_per_event + 1)},
        {"recipients": [BUDI], "occurred_at": NOW + HOUR_MS},
        {"recipients": [BUDI], "expires_at": NOW - 2 * 60_000},
        {"recipients": [BUDI], "template": {"name": "t", "language": "id", "params": [BUDI * 100]}},
    ],
    ids=[
        "no-recipients",
        "too-many-recipients",
        "future",
        "expires-before-occurring",
        "long-param",
    ],
)
def test_invalid_event_is_one_dead_letter(metrics: Metrics, overrides: dict[str, Any]) -> None:
    """An event that breaks a policy limit is one validate dead letter, no phone digits in it."""
    src = _event_record(_event(**overrides))
    out = _ingest(metrics).process([src])

    assert len(out) == 1
    (record,) = out
    assert (record.topic, record.key) == (topics.DEAD_LETTERS, BUSINESS.encode())
    d = CODEC.decode("herald.v1.DeadLetter", record.value)
    assert d["value"] == src.value
    assert (d["source_topic"], d["source_partition"], d["source_offset"]) == (
        topics.BUSINESS_EVENTS,
        2,
        41,
    )
    assert (d["stage"], d["error_type"]) == ("validate", "InvalidEvent")
    assert BUDI_DIGITS not in d["error_message"]
    assert (
        _sample(metrics, "herald_dead_letters_total", stage="validate", error_type="InvalidEvent")
        == 1
    )


def test_dead_letter_does_not_stop_the_rest_of_the_batch(metrics: Metrics) -> None:
    """Records after an unreadable one in the same batch are still processed, in order."""
    batch = [
        _event_record(_event([ANA]), offset=1),
        InRecord(topics.BUSINESS_EVENTS, 2, 2, b"k", _garbage()),
        _event_record(_event([BUDI], event_id="evt-2"), offset=3),
    ]
    out = _ingest(metrics).process(batch)

    assert [r.topic for r in out] == [CANDIDATES, topics.DEAD_LETTERS, CANDIDATES]
    assert _sample(metrics, "herald_events_consumed_total", topic=topics.BUSINESS_EVENTS) == 3


# --- Decide ---------------------------------------------------------------------------------


def _candidates_for(recipients: list[str], metrics: Metrics, **overrides: Any) -> list[InRecord]:
    out = _ingest(metrics).process([_event_record(_event(recipients, **overrides))])
    return [_as_input(r, offset=i) for i, r in enumerate(out) if r.topic == CANDIDATES]


def test_linked_and_opted_in_subscriber_gets_a_delivery(metrics: Metrics) -> None:
    """Account link and opt-in, then a candidate: one Delivery to the account's wa_id."""
    budi = _key(BUDI)
    states = States()
    batch = [_link(budi, BUDI_DIGITS), _signal(budi), *_candidates_for([BUDI], metrics)]
    out = _decide(metrics).process(batch, states)

    assert [r.topic for r in out] == [topics.DELIVERIES]
    (record,) = out
    assert record.key == budi.encode()
    assert record.partition is None
    d = CODEC.decode("herald.v1.Delivery", record.value)
    assert d["wa_id"] == BUDI_DIGITS
    assert d["subscriber"] == budi
    assert d["message_id"] == message_id("evt-1", budi)
    assert (d["event_id"], d["business_id"], d["recipient_index"]) == ("evt-1", BUSINESS, 0)
    assert (d["kind"], d["category"], d["entity_id"]) == ("SHIPMENT_UPDATE", "UTILITY", "parcel-9")
    assert d["template"] == {"name": "parcel_status", "language": "id", "params": ["parcel 9"]}
    assert (d["decided_at"], d["policy_version"]) == (NOW, POLICY.version)
    assert d["expires_at"] == NOW + DAY_MS
    assert d["priority"] == "NORMAL"
    assert "ig-123" not in str(d) and b"ig-123" not in record.value
    assert states[budi].account is not None
    assert "evt-1" in states[budi].outcomes


def _written_by(version_index: int, batch: InRecord) -> InRecord:
    """The same candidate batch, written by another version of the CandidateBatch schema."""
    version = CODEC.versions("herald.v1.CandidateBatch")[version_index]
    body = io.BytesIO()
    fastavro.schemaless_writer(body, version.schema, CODEC.decode(CANDIDATE_BATCH, batch.value))
    return replace(batch, value=version.header + body.getvalue())


def test_candidate_batches_of_the_previous_schema_version_are_decided_alike(
    metrics: Metrics,
) -> None:
    """A v2 batch (written before an upgrade, event first) gets the outcomes a v3 one gets."""
    budi = _key(BUDI)
    setup = [_link(budi, BUDI_DIGITS), _signal(budi)]
    (batch,) = _candidates_for([BUDI], metrics)
    assert CODEC.writer_of(batch.value) is CODEC.latest(CANDIDATE_BATCH)
    older = _written_by(-2, batch)
    assert older.value != batch.value
    outputs = [_decide(metrics).process([*setup, b], States()) for b in (batch, older)]
    assert outputs[0] == outputs[1] and len(outputs[0]) == 1


def test_an_event_is_decoded_once_for_all_its_batches(metrics: Metrics) -> None:
    """Batches of one event on several partitions share one decoded event."""
    recipients = [f"+6281299{n:06d}" for n in range(40)]
    batches = _candidates_for(recipients, metrics)
    assert len({b.partition for b in batches}) > 1
    decide = _decide(metrics)
    decide.process(batches, States())
    info = decide._event.cache_info()  # type: ignore[attr-defined]
    assert (info.misses, info.hits) == (1, len(batches) - 1)


def test_candidate_without_account_is_a_no_account_suppression(metrics: Metrics) -> None:
    """A recipient with no linked account gets a NO_ACCOUNT suppression, never a delivery."""
    states = States()
    out = _decide(metrics).process(_candidates_for([ANA], metrics), states)

    assert [r.topic for r in out] == [topics.SUPPRESSIONS]
    s = CODEC.decode("herald.v1.Suppression", out[0].value)
    assert (s["reason"], s["rule"], s["subscriber"]) == ("NO_ACCOUNT", "account", _key(ANA))
    assert s["message_id"] == message_id("evt-1", _key(ANA))
    assert out[0].key == _key(ANA).encode()


def test_batch_links_and_signals_apply_before_its_candidates(metrics: Metrics) -> None:
    """A link and opt-in in the same batch count for a candidate consumed before them."""
    budi = _key(BUDI)
    batch = [*_candidates_for([BUDI], metrics), _link(budi, BUDI_DIGITS), _signal(budi)]
    out = _decide(metrics).process(batch, States())

    assert [r.topic for r in out] == [topics.DELIVERIES]
    assert CODEC.decode("herald.v1.Delivery", out[0].value)["wa_id"] == BUDI_DIGITS


def test_stop_in_the_same_batch_wins_over_a_candidate_before_it(metrics: Metrics) -> None:
    """An opt-out consumed after a candidate in one batch still suppresses it."""
    budi = _key(BUDI)
    states = States()
    decide = _decide(metrics)
    decide.process([_link(budi, BUDI_DIGITS), _signal(budi)], states)
    batch = [*_candidates_for([BUDI], metrics), _signal(budi, "OPT_OUT", at=NOW - 1000)]
    out = decide.process(batch, states)

    assert [r.topic for r in out] == [topics.SUPPRESSIONS]
    assert CODEC.decode("herald.v1.Suppression", out[0].value)["reason"] == "OPTED_OUT"


def test_every_distinct_recipient_gets_exactly_one_outcome(metrics: Metrics) -> None:
    """Across ingest and decide, each distinct recipient index has exactly one outcome."""
    budi, ana = _key(BUDI), _key(ANA)
    recipients = [BUDI, ANA, BAD, *OTHERS, "+62 812 3456 7890"]
    ingested = _ingest(metrics).process([_event_record(_event(recipients))])
    candidates = [_as_input(r) for r in ingested if r.topic == CANDIDATES]
    links = [_link(budi, BUDI_DIGITS), _signal(budi), _link(ana, ANA[1:])]
    decided = _decide(metrics).process([*links, *candidates], States())

    outcomes = [
        *_of(ingested, topics.SUPPRESSIONS, "herald.v1.Suppression"),
        *_of(decided, topics.SUPPRESSIONS, "herald.v1.Suppression"),
        *_of(decided, topics.DELIVERIES, "herald.v1.Delivery"),
    ]
    assert Counter(o["recipient_index"] for o in outcomes) == dict.fromkeys(range(7), 1)
    by_index = {o["recipient_index"]: o for o in outcomes}
    assert by_index[0]["wa_id"] == BUDI_DIGITS
    assert by_index[1]["reason"] == "NO_CONSENT"
    assert by_index[2]["reason"] == "INVALID_RECIPIENT"
    assert len({o["message_id"] for o in outcomes}) == 7


@pytest.mark.parametrize("key", [b"someone-else", None], ids=["other-key", "no-key"])
@pytest.mark.parametrize("topic", [topics.ACCOUNT_LINKS, topics.USER_SIGNALS])
def test_record_keyed_otherwise_than_its_subscriber_is_a_dead_letter(
    metrics: Metrics, topic: str, key: bytes | None
) -> None:
    """A link or signal whose key is not its subscriber is dead-lettered and changes no state."""
    budi = _key(BUDI)
    src = _link(budi, BUDI_DIGITS) if topic == topics.ACCOUNT_LINKS else _signal(budi)
    src = InRecord(src.topic, src.partition, 17, key, src.value)
    states = States()
    out = _decide(metrics).process([src], states)

    assert [r.topic for r in out] == [topics.DEAD_LETTERS]
    d = CODEC.decode("herald.v1.DeadLetter", out[0].value)
    assert (d["stage"], d["error_type"]) == ("decode", "KeyMismatch")
    assert (d["source_topic"], d["source_offset"], d["key"], d["value"]) == (
        topic,
        17,
        key,
        src.value,
    )
    assert BUDI_DIGITS not in d["error_message"]
    assert states.get(budi, SubscriberState()) == SubscriberState()
    assert (
        _sample(metrics, "herald_dead_letters_total", stage="decode", error_type="KeyMismatch") == 1
    )


@pytest.mark.parametrize("topic", [CANDIDATES, topics.ACCOUNT_LINKS, topics.USER_SIGNALS])
def test_unreadable_record_on_a_decide_input_is_a_dead_letter(metrics: Metrics, topic: str) -> None:
    """Garbage on any decide input is one decode dead letter with its origin."""
    src = InRecord(topic, 3, 8, b"k", _garbage())
    out = _decide(metrics).process([src], States())

    assert [r.topic for r in out] == [topics.DEAD_LETTERS]
    d = CODEC.decode("herald.v1.DeadLetter", out[0].value)
    assert (d["stage"], d["source_topic"], d["source_partition"], d["value"]) == (
        "decode",
        topic,
        3,
        src.value,
    )
    assert BUDI_DIGITS not in d["error_message"]


def test_replayed_candidate_batch_yields_byte_identical_outcomes(metrics: Metrics) -> None:
    """The same candidate batch decided again, later, yields the very same records."""
    budi, ana = _key(BUDI), _key(ANA)
    clock = Clock()
    decide = _decide(metrics, clock)
    states = States()
    decide.process([_link(budi, BUDI_DIGITS), _signal(budi), _link(ana, ANA[1:])], states)
    candidates = _candidates_for([BUDI, ANA], metrics)

    first = decide.process(candidates, states)
    clock.now += HOUR_MS
    second = decide.process(candidates, states)

    assert sorted(r.topic for r in first) == [topics.DELIVERIES, topics.SUPPRESSIONS]
    assert second == first


def test_replay_after_account_deletion_yields_no_different_outcome(metrics: Metrics) -> None:
    """A delivered event replayed after the account's deletion never becomes a suppression."""
    budi = _key(BUDI)
    clock = Clock()
    decide = _decide(metrics, clock)
    states = States()
    decide.process([_link(budi, BUDI_DIGITS), _signal(budi)], states)
    candidates = _candidates_for([BUDI], metrics)
    first = decide.process(candidates, states)
    assert [r.topic for r in first] == [topics.DELIVERIES]

    clock.now += HOUR_MS
    decide.process([_link(budi, BUDI_DIGITS, status="DELETED", at=NOW)], states)
    replay = decide.process(candidates, states)
    assert replay in ([], first), "nothing, or the original Delivery byte for byte"
    fresh = _candidates_for([BUDI], metrics, event_id="evt-2")
    (after,) = decide.process(fresh, states)
    assert after.topic == topics.SUPPRESSIONS, "a new event to a deleted account is suppressed"


def test_metrics_count_consumption_and_outcomes(metrics: Metrics) -> None:
    """Counters move by topic, category, reason and stage; latency is observed per decision."""
    budi = _key(BUDI)
    ingest, decide = _ingest(metrics), _decide(metrics)
    states = States()
    ingested = ingest.process(
        [
            _event_record(_event([BUDI, ANA, BAD])),
            InRecord(topics.BUSINESS_EVENTS, 0, 9, None, _garbage()),
        ]
    )
    candidates = [_as_input(r) for r in ingested if r.topic == CANDIDATES]
    decide.process(
        [_link(budi, BUDI_DIGITS), _signal(budi), _link(budi, BUDI_DIGITS, key=b"x"), *candidates],
        states,
    )

    def value(name: str, **labels: str) -> float:
        return _sample(metrics, name, **labels)

    assert value("herald_events_consumed_total", topic=topics.BUSINESS_EVENTS) == 2
    assert value("herald_events_consumed_total", topic=topics.ACCOUNT_LINKS) == 2
    assert value("herald_events_consumed_total", topic=topics.USER_SIGNALS) == 1
    assert value("herald_events_consumed_total", topic=CANDIDATES) == len(candidates)
    assert value("herald_deliveries_total", category="UTILITY", kind="SHIPMENT_UPDATE") == 1
    assert value("herald_suppressions_total", reason="NO_ACCOUNT", category="UTILITY") == 1
    assert value("herald_suppressions_total", reason="INVALID_RECIPIENT", category="UTILITY") == 1
    assert (
        value("herald_dead_letters_total", stage="decode", error_type="NotSingleObjectEncoded") == 1
    )
    assert value("herald_dead_letters_total", stage="decode", error_type="KeyMismatch") == 1
    assert value("herald_decision_latency_seconds_count") == 2
    assert value("herald_decision_latency_seconds_sum") == pytest.approx(2 * 60.0)


class CheckingRegistry(SchemaRegistry):
    """The codec, checking every record it encodes, whatever the caller asks."""

    def encode(self, name: str, record: Mapping[str, Any], *, check: bool = True) -> bytes:
        return super().encode(name, record, check=True)


def _simulated_day(
    codec: SchemaRegistry, metrics: Metrics
) -> tuple[list[InRecord], list[InRecord], list[InRecord]]:
    """Return a small simulated day as decide inputs: (setup, signals, candidates)."""
    traffic = build_traffic(Scenario(subscribers=300, start_ms=NOW))
    setup = [r for r in encoded(traffic.setup, DEVELOPMENT_SECRET) if r[0] in DECIDE_INPUTS]
    events = list(encoded(traffic.events, DEVELOPMENT_SECRET))
    ingest = Ingest(codec, KEYS, POLICY, PARTITIONS, CANDIDATES, Clock(), metrics)
    business = [InRecord(t, 0, i, k, v) for i, (t, k, v) in enumerate(events)
                if t == topics.BUSINESS_EVENTS]  # fmt: skip
    signals = [InRecord(t, 0, i, k, v) for i, (t, k, v) in enumerate(events) if t in DECIDE_INPUTS]
    candidates = [_as_input(r) for r in ingest.process(business) if r.topic == CANDIDATES]
    return [InRecord(t, 0, i, k, v) for i, (t, k, v) in enumerate(setup)], signals, candidates


def test_outcomes_encoded_unchecked_fit_their_schemas(metrics: Metrics) -> None:
    """Outcomes skip the codec's field check for speed: every one built in a day passes it."""
    codec = CheckingRegistry.from_directory(schemas_dir())
    setup, signals, candidates = _simulated_day(codec, metrics)
    decide = Decide(codec, POLICY, CANDIDATES, Clock(), metrics)
    states = States()
    decide.process(setup, states)
    out = decide.process([*signals, *candidates], states)
    kinds = Counter(r.topic for r in out)
    assert kinds[topics.DELIVERIES] > 0 and kinds[topics.SUPPRESSIONS] > 0
    assert kinds[topics.DEAD_LETTERS] == 0, "an outcome failed the schema check"


def test_chunked_decide_changes_only_when_outputs_leave(metrics: Metrics) -> None:
    """Outputs in chunks are the batch's outputs in order; signals still apply first."""
    setup, signals, candidates = _simulated_day(CODEC, metrics)
    # Candidates first in the batch: the signals (STOPs among them) must still win.
    batch = [*candidates, *signals]
    whole_states, chunked_states = States(), States()
    decide = _decide(metrics)
    decide.process(setup, whole_states)
    decide.process(setup, chunked_states)
    whole = decide.process(batch, whole_states)
    chunks = list(decide.process_in_chunks(batch, chunked_states, chunk=100))
    assert len(chunks) > 5
    assert all(len(c) >= 100 and full for c, full in chunks[:-1])
    assert not chunks[-1][1]  # the rest: not full
    assert [r for c, _ in chunks for r in c] == whole
    assert chunked_states == whole_states
    # A batch of signals alone still ends in a chunk: the caller writes state after each.
    assert list(decide.process_in_chunks(signals, chunked_states, chunk=100)) == [([], False)]


def test_candidate_batches_travel_bundled_by_partition(metrics: Metrics) -> None:
    """Ingest's shell output: one bundle per partition, batches in order, the rest as is."""
    _setup, _signals, candidates = _simulated_day(CODEC, metrics)
    batches = [OutRecord(CANDIDATES, r.key, r.value or b"", r.partition) for r in candidates]
    other = OutRecord(topics.SUPPRESSIONS, b"k", b"v")
    bundled = bundle_candidates([*batches, other], CANDIDATES, CODEC)
    assert bundled[-1] == other
    bundles = [r for r in bundled if r.topic == CANDIDATES]
    assert len(bundles) == len({r.partition for r in batches}) < len(batches)
    for b in bundles:
        inner = CODEC.decode("herald.v1.CandidateBundle", b.value)["batches"]
        assert inner == [r.value for r in batches if r.partition == b.partition]
    small = bundle_candidates(batches, CANDIDATES, CODEC, limit=2_000)
    assert len(small) > len(bundles), "a bundle stops growing at its byte limit"


def test_decide_gives_bundled_batches_the_outcomes_they_get_alone(metrics: Metrics) -> None:
    """A bundle decides like its batches one by one; a bad batch in it is one dead letter."""
    setup, signals, candidates = _simulated_day(CODEC, metrics)
    decide = _decide(metrics)
    alone, bundled = States(), States()
    decide.process([*setup, *signals], alone)
    decide.process([*setup, *signals], bundled)
    expected = decide.process(candidates, alone)
    batches = [OutRecord(CANDIDATES, r.key, r.value or b"", r.partition) for r in candidates]
    bundles = [_as_input(b, i) for i, b in enumerate(bundle_candidates(batches, CANDIDATES, CODEC))]
    got = decide.process(bundles, bundled)
    assert sorted(r.value for r in got) == sorted(r.value for r in expected)
    assert bundled == alone

    first = CODEC.decode("herald.v1.CandidateBundle", bundles[0].value or b"")["batches"]
    broken = CODEC.encode("herald.v1.CandidateBundle", {"batches": [b"garbage", *first]})
    out = decide.process([InRecord(CANDIDATES, 0, 7, None, broken)], States())
    dead = [
        CODEC.decode("herald.v1.DeadLetter", r.value) for r in out if r.topic == topics.DEAD_LETTERS
    ]
    assert [d["dead_letter_id"] for d in dead] == [f"{CANDIDATES}/0/7#0"]
    assert dead[0]["value"] == b"garbage", "the bad batch alone is kept, for replay"
    assert len(out) > 1, "the bundle's good batches are still decided"

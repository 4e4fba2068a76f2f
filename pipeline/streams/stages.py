"""The work of each stage over a batch of records, free of faust.

Agents hand a batch of raw records to a stage and send what it returns. Keeping the
stages synchronous and faust-free lets tests drive them directly and keeps each
agent a dozen lines.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import ClassVar

from aiokafka.partitioner import murmur2

from pipeline import topics
from pipeline.codec import CodecError, LastFieldApart, SchemaRegistry, WrongRecordType
from pipeline.domain import (
    BusinessWindow,
    InvalidEvent,
    KeyMaker,
    admit,
    apply_account,
    apply_signal,
    decide_batch,
    expand,
    suppress_invalid,
    validate_event,
)
from pipeline.domain.models import (
    BusinessEvent,
    Candidate,
    Deliver,
    Policy,
    Reason,
    Recipient,
    SubscriberState,
    Suppress,
)
from pipeline.metrics import Metrics, observe_many
from pipeline.streams import records

log = logging.getLogger(__name__)

Clock = Callable[[], int]  # epoch milliseconds


@dataclass(frozen=True, slots=True)
class InRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    part: int | None = None  # which CandidateBatch of a CandidateBundle, if one


@dataclass(frozen=True, slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None  # None: the producer's key partitioner decides


def partition_for(key: str, partitions: int) -> int:
    """Return the partition Kafka's default (murmur2) partitioner gives a key."""
    return partition_of(key.encode(), partitions)


@lru_cache(maxsize=1 << 20)
def _murmur2_partition(key: bytes, partitions: int) -> int:
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def partition_of(key: bytes | None, partitions: int) -> int:
    """Return the partition Kafka's default partitioner picks for `key` (any, for None)."""
    if key is None:
        return random.randrange(partitions)
    return _murmur2_partition(key, partitions)


# The biggest record the worker's producer sends is faust's producer_max_request_size
# (1,000,000 bytes); a bigger one makes the send fail and the agent stop on the same
# input after every restart. Dead letters keep original bytes up to this size, and
# business events must fit in it (their candidate batches carry the whole event).
MAX_RECORD_BYTES = 900_000


@dataclass
class DeadLetters:
    """Builds dead-letter records; the error text never carries the record's content."""

    codec: SchemaRegistry
    clock: Clock
    metrics: Metrics

    def record(self, src: InRecord, stage: str, error: BaseException, detail: str) -> OutRecord:
        """Wrap a record that cannot be processed, with why and where from."""
        error_type = type(error).__name__
        self.metrics.dead_letters.labels(stage=stage, error_type=error_type).inc()
        log.warning(
            "dead letter: stage=%s error=%s topic=%s partition=%d offset=%d part=%s",
            stage, error_type, src.topic, src.partition, src.offset, src.part,
        )  # fmt: skip
        key, original = src.key, src.value or b""
        if len(original) + len(key or b"") > MAX_RECORD_BYTES:
            # Too big to send on: keep where it is (its source offset), not what it is.
            detail += f" (the {len(original)}-byte original is not kept: over the record limit)"
            key, original = (key if len(key or b"") <= 1024 else None), b""
        value = self.codec.encode(
            "herald.v1.DeadLetter",
            {
                "dead_letter_id": f"{src.topic}/{src.partition}/{src.offset}"
                + (f"#{src.part}" if src.part is not None else ""),
                "source_topic": src.topic,
                "source_partition": src.partition,
                "source_offset": src.offset,
                "key": key,
                "value": original,
                "stage": stage,
                "error_type": error_type,
                "error_message": detail,
                "failed_at": self.clock(),
                "replay_count": 0,
            },
        )
        return OutRecord(topics.DEAD_LETTERS, key, value)


@dataclass
class Ingest:
    """Stage 1: business events -> candidate batches on the subscriber's partition."""

    name: ClassVar[str] = "ingest"
    codec: SchemaRegistry
    keys: KeyMaker
    policy: Policy
    partitions: int
    candidates_topic: str
    clock: Clock
    metrics: Metrics
    dead: DeadLetters = field(init=False)

    def __post_init__(self) -> None:
        self.dead = DeadLetters(self.codec, self.clock, self.metrics)
        self.batches = LastFieldApart(self.codec, CANDIDATE_BATCH)

    def process(
        self, batch: Iterable[InRecord], windows: WindowStore | None = None
    ) -> list[OutRecord]:
        """Turn each business event into candidate batches and invalid-recipient outcomes.

        `windows` holds each business's rolling window of users reached (business-events
        are keyed by business, so one partition owns a business); recipients over the
        business's tier limit travel on marked `limited`, and decide says BUSINESS_LIMIT
        unless the event was decided for them before (a replay keeps its outcome).
        """
        windows = windows if windows is not None else _Windows()
        return [r for src in batch for r in self._process_one(src, windows)[0]]

    def process_in_chunks(
        self, batch: Iterable[InRecord], windows: WindowStore, chunk: int = 1 << 62
    ) -> Iterator[tuple[list[OutRecord], bool]]:
        """Like `process`, candidate batches bundled by partition: yield (outputs, True)
        whenever the events so far reach `chunk` recipients, and last (the rest, False)."""
        out: list[OutRecord] = []
        recipients = 0
        for src in batch:
            records, n = self._process_one(src, windows)
            out.extend(records)
            recipients += n
            if recipients >= chunk:
                yield bundle_candidates(out, self.candidates_topic, self.codec), True
                out, recipients = [], 0
        yield bundle_candidates(out, self.candidates_topic, self.codec), False

    def _process_one(self, src: InRecord, windows: WindowStore) -> tuple[list[OutRecord], int]:
        """Return one business event's output records and how many recipients it has."""
        self.metrics.events_consumed.labels(topic=src.topic).inc()
        if len(src.value or b"") > MAX_RECORD_BYTES:
            too_big = InvalidEvent(
                f"event is {len(src.value or b'')} bytes, more than the limit of {MAX_RECORD_BYTES}"
            )
            return [self.dead.record(src, "validate", too_big, str(too_big))], 0
        try:
            wire = self.codec.decode("herald.v1.BusinessEvent", src.value or b"")
            event = records.event_from_wire(wire)
        except (CodecError, KeyError, ValueError, TypeError) as exc:
            return [self.dead.record(src, "decode", exc, _safe_message(exc))], 0
        now = self.clock()
        try:
            validate_event(event, self.policy, now)
        except InvalidEvent as exc:
            return [self.dead.record(src, "validate", exc, str(exc))], 0
        try:
            return self._fan_out(src, event, windows, now), len(event.recipients)
        except (CodecError, KeyError, ValueError, TypeError) as exc:
            # Bytes fastavro reads but the schema cannot hold (an Avro int of more than
            # 32 bits decodes as a Python int, then fails to re-encode): a dead letter,
            # never an exception that stops the agent on this record again and again.
            return [self.dead.record(src, "decode", exc, _safe_message(exc))], 0

    def _fan_out(
        self, src: InRecord, event: BusinessEvent, windows: WindowStore, now: int
    ) -> list[OutRecord]:
        """Encode a valid event's candidate batches and invalid-recipient outcomes."""
        out: list[OutRecord] = []
        expansion = expand(event, self.keys, self.policy, now)
        business = self.policy.businesses.get(event.business_id)
        _admitted, limited, window = admit(
            windows[event.business_id], business,
            [r.subscriber for r in expansion.recipients], self.policy, now,
        )  # fmt: skip
        by_partition: dict[int, list[Recipient]] = defaultdict(list)
        for r in expansion.recipients:
            by_partition[partition_for(r.subscriber, self.partitions)].append(r)
        source = (src.topic, src.partition, src.offset)
        if by_partition:  # the event is checked and written once, whatever its partitions
            wire_event = records.event_to_wire(event, with_recipients=False)
            event_bytes = self.batches.encode_last(wire_event)
        for partition, recipients in sorted(by_partition.items()):
            rest = records.candidate_batch_rest_to_wire(
                expansion.category, recipients, source, limited
            )
            # Unchecked: Herald computed every field but the event, which was checked
            # (encode_last); the check cost ~2 µs a recipient, half of writing them.
            value = self.batches.encode(rest, event_bytes, check=False)
            out.append(OutRecord(self.candidates_topic, src.key, value, partition))
        for bad in expansion.invalid:
            s = suppress_invalid(event, bad, self.policy, now)
            wire_s = records.suppression_to_wire(
                event, expansion.category, bad.subscriber, bad.index, s
            )
            self.metrics.suppressions.labels(
                reason=s.reason.value, category=expansion.category.value
            ).inc()
            out.append(
                OutRecord(
                    topics.SUPPRESSIONS,
                    bad.subscriber.encode(),
                    self.codec.encode("herald.v1.Suppression", wire_s),
                )
            )
        windows[event.business_id] = window  # only once every record is encoded
        return out


StateStore = MutableMapping[str, SubscriberState]
WindowStore = MutableMapping[str, BusinessWindow]


class _Windows(dict[str, BusinessWindow]):
    """An in-memory window store, for callers that keep no business state."""

    def __missing__(self, business_id: str) -> BusinessWindow:
        return BusinessWindow()


@dataclass
class Decide:
    """Stages 2 and 3: keep subscriber state, decide each candidate, emit its outcome."""

    name: ClassVar[str] = "decide"
    codec: SchemaRegistry
    policy: Policy
    candidates_topic: str
    clock: Clock
    metrics: Metrics
    dead: DeadLetters = field(init=False)

    def __post_init__(self) -> None:
        self.dead = DeadLetters(self.codec, self.clock, self.metrics)
        self.batches = LastFieldApart(self.codec, CANDIDATE_BATCH)
        # An event reaches a worker in one batch per partition it has recipients in, each
        # carrying the same bytes: decoded once (a decode failure is not cached).
        self._event = lru_cache(maxsize=EVENT_MEMO_SIZE)(self._event_uncached)
        self.evictions = self.metrics.state_evictions.labels(table="subscribers")
        # A labels() lookup per outcome is measurable; the label sets are few.
        self._delivered = lru_cache(maxsize=None)(self.metrics.deliveries.labels)
        self._suppressed = lru_cache(maxsize=None)(self.metrics.suppressions.labels)

    def process(self, batch: Iterable[InRecord], states: StateStore) -> list[OutRecord]:
        """Apply the batch's links and signals, then decide its candidates.

        State updates go first: a user's STOP and a promotion to them can reach the
        worker in one batch in either order (they travel on different topics, and the
        promotion through the ingest stage), and the STOP must win. `states` loads
        subscribers lazily; the caller persists the entries this call changes.
        """
        return [r for chunk, _ in self.process_in_chunks(batch, states) for r in chunk]

    def process_in_chunks(
        self, batch: Iterable[InRecord], states: StateStore, chunk: int = 1 << 62
    ) -> Iterator[tuple[list[OutRecord], bool]]:
        """Like `process`: yield (outputs, True) whenever `chunk` or more are ready, and
        last (the rest, False; even empty: the caller writes state back after each).

        Every link and signal of the batch is applied before the first candidate is
        decided, whatever the chunk size.
        """
        out: list[OutRecord] = []
        batch = list(batch)
        for topic, count in Counter(src.topic for src in batch).items():
            self.metrics.events_consumed.labels(topic=topic).inc(count)
        for src in batch:
            if src.topic != self.candidates_topic:
                out.extend(self._guarded(src, states, self._update))
        for src in batch:
            if src.topic == self.candidates_topic:
                out.extend(self._guarded(src, states, self._decide))
                if len(out) >= chunk:
                    yield out, True
                    out = []
        yield out, False

    def _guarded(
        self,
        src: InRecord,
        states: StateStore,
        step: Callable[[InRecord, StateStore], list[OutRecord]],
    ) -> list[OutRecord]:
        try:
            return step(src, states)
        except (CodecError, KeyError, ValueError, TypeError) as exc:
            return [self.dead.record(src, "decode", exc, _safe_message(exc))]

    def _update(self, src: InRecord, states: StateStore) -> list[OutRecord]:
        if src.topic == topics.ACCOUNT_LINKS:
            wire = self.codec.decode("herald.v1.AccountLink", src.value or b"")
            link = records.account_link_from_wire(wire)
            _check_key(src, link.subscriber)
            states[link.subscriber] = apply_account(states[link.subscriber], link)
        elif src.topic == topics.USER_SIGNALS:
            wire = self.codec.decode("herald.v1.UserSignal", src.value or b"")
            signal = records.signal_from_wire(wire)
            _check_key(src, signal.subscriber)
            states[signal.subscriber] = apply_signal(states[signal.subscriber], signal, self.policy)
        return []

    def _decide(self, src: InRecord, states: StateStore) -> list[OutRecord]:
        if self.codec.writer_of(src.value or b"").name == BUNDLE:
            bundle = self.codec.decode(BUNDLE, src.value or b"")
            out: list[OutRecord] = []
            for i, inner in enumerate(bundle["batches"]):
                # One bad batch is one dead letter; the bundle's others are decided.
                part = InRecord(src.topic, src.partition, src.offset, src.key, inner, i)
                out.extend(self._guarded(part, states, self._decide_batch))
            return out
        return self._decide_batch(src, states)

    def _candidates(self, value: bytes) -> list[Candidate]:
        try:
            rest, event_bytes = self.batches.split(value)
        except WrongRecordType:  # an older version's batch, or not one: decoded whole
            return records.candidates_from_wire(self.codec.decode(CANDIDATE_BATCH, value))
        return records.candidates_of(self._event(event_bytes), rest)

    def _event_uncached(self, event_bytes: bytes) -> BusinessEvent:
        return records.event_from_wire(self.batches.decode_last(event_bytes))

    def _decide_batch(self, src: InRecord, states: StateStore) -> list[OutRecord]:
        candidates = self._candidates(src.value or b"")
        if not candidates:
            return []
        now = self.clock()
        before = [states[c.recipient.subscriber].outcomes for c in candidates]
        decisions = decide_batch(candidates, states, self.policy, now)
        # Each candidate adds its event's outcome unless remembered (a replay): whatever
        # else is gone was pruned by age.
        event = candidates[0].event
        expected = sum(len(o) + (event.event_id not in o) for o in before)
        kept = sum(len(states[c.recipient.subscriber].outcomes) for c in candidates)
        if expected > kept:
            self.evictions.inc(expected - kept)
        # A batch is one event decided at one instant: its metrics are counted once.
        observe_many(
            self.metrics.decision_latency, max(0, now - event.occurred_at) / 1000, len(candidates)
        )
        delivered, suppressed = 0, Counter[Reason]()
        out: list[OutRecord] = []
        for c, d in zip(candidates, decisions, strict=True):
            if isinstance(d, Deliver):
                record = self._delivery(c, d, states)
                if record is not None:
                    out.append(record)
                    delivered += 1
            else:
                out.append(self._suppression(c, d))
                suppressed[d.reason] += 1
        category = candidates[0].category.value
        if delivered:
            self._delivered(category, event.kind.value).inc(delivered)
        for reason, n in suppressed.items():
            self._suppressed(reason.value, category).inc(n)
        if blocked := suppressed[Reason.LINK_BLOCKED]:
            self.metrics.blocked_links.labels(business=event.business_id).inc(blocked)
        return out

    def _delivery(self, c: Candidate, d: Deliver, states: StateStore) -> OutRecord | None:
        account = states[c.recipient.subscriber].account
        if account is None:
            # A replayed delivery for a subscriber whose state no longer holds the account
            # (a deleted account keeps its wa_id; only lost state gets here): the original
            # Delivery stands, and a second, different outcome would break the contract.
            log.info("replayed delivery not re-emitted: account no longer known")
            return None
        wire = records.delivery_to_wire(c, d, account.wa_id)
        # Unchecked: records.py builds outcomes from decoded records (a unit test checks
        # a simulated day's worth against the schemas).
        value = self.codec.encode("herald.v1.Delivery", wire, check=False)
        return OutRecord(topics.DELIVERIES, c.recipient.subscriber.encode(), value)

    def _suppression(self, c: Candidate, d: Suppress) -> OutRecord:
        wire = records.suppression_to_wire(
            c.event, c.category, c.recipient.subscriber, c.recipient.index, d
        )
        value = self.codec.encode("herald.v1.Suppression", wire, check=False)
        return OutRecord(topics.SUPPRESSIONS, c.recipient.subscriber.encode(), value)


CANDIDATE_BATCH = "herald.v1.CandidateBatch"
EVENT_MEMO_SIZE = 1_024  # events decoded lately: a few batches' worth
BUNDLE = "herald.v1.CandidateBundle"
# A bundle's candidate batches, at most: a fraction of the 1 MB record limit (a batch
# bigger than this goes alone).
BUNDLE_BYTES = 256 * 1024


def bundle_candidates(
    out: Iterable[OutRecord], candidates_topic: str, codec: SchemaRegistry,
    limit: int = BUNDLE_BYTES,
) -> list[OutRecord]:  # fmt: skip
    """Pack the candidate batches bound for each partition into CandidateBundle records.

    The decide stage pays more per Kafka record than per candidate: a hundred small
    events, each reaching a few partitions, become one record per partition instead
    of hundreds. Order within a partition is kept; other records pass through.
    """
    passed: list[OutRecord] = []
    packs: dict[int | None, list[list[bytes]]] = {}
    filled: dict[int | None, int] = {}  # bytes in each partition's last bundle
    for r in out:
        if r.topic != candidates_topic:
            passed.append(r)
            continue
        pack = packs.setdefault(r.partition, [[]])
        if pack[-1] and filled[r.partition] + len(r.value) > limit:
            pack.append([])
            filled[r.partition] = 0
        pack[-1].append(r.value)
        filled[r.partition] = filled.get(r.partition, 0) + len(r.value)
    bundles = [
        OutRecord(candidates_topic, None, codec.encode(BUNDLE, {"batches": batches}), partition)
        for partition, pack in packs.items()
        for batches in pack
    ]
    return bundles + passed


class KeyMismatch(ValueError):
    """The record key is not the subscriber key inside the record."""


def _check_key(src: InRecord, subscriber: str) -> None:
    # State is partitioned by the record key: a record keyed otherwise would land
    # the subscriber's state on a partition where candidates never look for it.
    if src.key is None or src.key.decode(errors="replace") != subscriber:
        raise KeyMismatch("record key is not the record's subscriber key")


def _safe_message(exc: BaseException) -> str:
    """Describe a decode failure without echoing the record's content."""
    if isinstance(exc, CodecError | KeyMismatch):
        return str(exc)  # these messages are written to carry no field values
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}" if exc.args else "missing field"
    return f"{type(exc).__name__} while reading the record"

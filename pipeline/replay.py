"""`herald replay`: re-publish chosen dead letters to their source topic, each exactly once.

Once the cause of a dead letter is fixed (a schema registered, a policy limit raised, a
producer repaired), the operator replays it: the original key and value bytes go back
to the source topic and partition they came from, with a Kafka header
`herald-replay-of: <dead_letter_id>` so the copy can be traced to its dead letter.
Dead letters are chosen by id, by stage, or all of them.

Exactly once, and why in this order
-----------------------------------
The `{app_id}-replays` topic (compacted, key dead_letter_id) remembers what was replayed.
Neither simple order of "publish" and "remember" is safe on its own:

* remember, then publish: a crash between the two marks a dead letter replayed that
  never was, and it is lost for good. Herald never trades loss for anything;
* publish, then remember: a crash between the two leaves a copy on the source topic
  and no memory of it, so the next run publishes a second copy.

So each replay is a small two-phase protocol, every step acknowledged by the broker
(acks=all) before the next:

1. write an intent, `pending`, naming the partition the copy goes to and that
   partition's end offset before the publish (the copy can only land at or after it);
2. publish the copy, with the `herald-replay-of` header;
3. write `done` with the offset where the copy landed.

A run that finds a `pending` intent (its predecessor crashed between 1 and 3) does not
guess: it reads that partition from the intent's offset and looks for a record carrying
the header with that dead letter's id. Found: the earlier run did publish it, so it is
only marked `done`. Not found: it was never published, and is published now. A crash
can therefore neither lose a replay nor publish one twice. The publishing producer has
no retries (a retry after a lost acknowledgement is exactly a duplicate); a failed send
stops the run with its intents pending, for the next run to settle.

Behind this, Herald's at-least-once design is a second line of defence: a replayed
business event keeps its event_id, message ids are deterministic, and the subscriber
state remembers each event's outcome, so even a copy published twice (say by two
operators replaying at the same moment, which this protocol does not arbitrate) would
yield the same outcome again, never a second, different one.

Reading to the end of a topic does not trust the broker's reported end offset alone
(the embedded broker reports the base offset of the last record batch + 1): the reader
reaches the reported end, then drains what the last fetch returned.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline import topics
from pipeline.codec import CodecError, SchemaRegistry, default_registry
from pipeline.errors import BrokerError, HeraldError
from pipeline.settings import Settings

log = logging.getLogger(__name__)

REPLAY_HEADER = "herald-replay-of"
PENDING, DONE = "pending", "done"
CHUNK = 500  # dead letters per intent/publish/done round trip


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What a replay needs of one record of `dead-letters`."""

    dead_letter_id: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes
    stage: str
    error_type: str
    error_message: str
    failed_at: int

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> DeadLetter:
        return cls(
            d["dead_letter_id"], d["source_topic"], d["source_partition"], d["source_offset"],
            d["key"], d["value"], d["stage"], d["error_type"], d["error_message"], d["failed_at"],
        )  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """Everything but the key and value bytes (they may hold personal data)."""
        return {
            "dead_letter_id": self.dead_letter_id,
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "stage": self.stage,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "failed_at": self.failed_at,
            "value_bytes": len(self.value),
        }


@dataclass(frozen=True, slots=True)
class Mark:
    """A record of `{app_id}-replays`: a replay intended (pending) or made (done)."""

    state: str  # PENDING or DONE
    topic: str  # where the copy goes
    partition: int
    from_offset: int  # the partition's end before the publish: the copy is at or after it
    offset: int | None = None  # where the copy landed (DONE only)
    at: int = 0  # epoch milliseconds of the mark

    def encode(self) -> bytes:
        return json.dumps(
            {"state": self.state, "topic": self.topic, "partition": self.partition,
             "from_offset": self.from_offset, "offset": self.offset, "at": self.at},
            separators=(",", ":"),
        ).encode()  # fmt: skip

    @classmethod
    def decode(cls, data: bytes | None) -> Mark | None:
        """Read a mark; None for a tombstone. Unreadable marks are an error, not a guess."""
        if data is None:
            return None
        try:
            d = json.loads(data)
            return cls(d["state"], d["topic"], d["partition"], d["from_offset"], d.get("offset"),
                       d.get("at", 0))  # fmt: skip
        except (ValueError, KeyError, TypeError) as exc:
            raise HeraldError(f"unreadable record on the replays topic ({exc})") from None


@dataclass(frozen=True)
class Selection:
    """Which dead letters to replay: by id, by stage, or all."""

    ids: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    everything: bool = False

    def matches(self, d: DeadLetter) -> bool:
        return self.everything or d.dead_letter_id in self.ids or d.stage in self.stages


@dataclass
class Plan:
    """The selected dead letters, sorted by what has to happen to them."""

    replay: list[DeadLetter] = field(default_factory=list)  # never replayed
    interrupted: list[tuple[DeadLetter, Mark]] = field(default_factory=list)  # pending intent
    done: list[DeadLetter] = field(default_factory=list)  # replayed already
    empty: list[DeadLetter] = field(default_factory=list)  # no bytes: nothing to re-read
    not_found: list[str] = field(default_factory=list)  # asked for by id, not in dead-letters


def plan(
    dead_letters: Iterable[DeadLetter], marks: Mapping[str, Mark], selection: Selection
) -> Plan:
    """Choose and classify dead letters (pure). A dead letter written twice counts once."""
    p = Plan()
    seen: set[str] = set()
    for d in dead_letters:
        if d.dead_letter_id in seen or not selection.matches(d):
            continue
        seen.add(d.dead_letter_id)
        mark = marks.get(d.dead_letter_id)
        if not d.value:
            # A tombstone or an empty record: the dead letter cannot tell which, and
            # publishing b"" onto a compacted topic would undo a deletion.
            p.empty.append(d)
        elif mark is None:
            p.replay.append(d)
        elif mark.state == DONE:
            p.done.append(d)
        else:
            p.interrupted.append((d, mark))
    p.not_found = [i for i in dict.fromkeys(selection.ids) if i not in seen]
    return p


@dataclass
class Summary:
    replayed: int = 0
    skipped: int = 0  # replayed before (by an earlier run, finished or interrupted)
    empty: int = 0  # dead letters without bytes, never replayed
    not_found: int = 0  # ids asked for that are not in dead-letters

    def line(self, dry_run: bool = False) -> str:
        text = (
            f"would replay {self.replayed}, skip {self.skipped} already replayed"
            if dry_run
            else f"replayed {self.replayed}, skipped {self.skipped} already replayed"
        )
        if self.empty:
            text += f", {self.empty} empty (nothing to replay)"
        return text + (f", {self.not_found} not found" if self.not_found else "")


def replay(
    settings: Settings,
    selection: Selection,
    *,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
    codec: SchemaRegistry | None = None,
) -> Summary:
    """Replay the selected dead letters (see the module docstring); return the counts."""
    codec = codec or default_registry()
    replays = topics.replays_topic(settings.app_id)
    topics.create_topics(
        settings.broker, [(replays, settings.partitions, topics.COMPACTED)],
        settings.replication_factor, settings.security.kafka_python_config(),
    )  # fmt: skip
    with _Kafka(settings) as kafka:
        marks: dict[str, Mark] = {}
        for r in kafka.read_whole(replays):
            mark = Mark.decode(r.value)
            key = (r.key or b"").decode()
            if mark is None:
                marks.pop(key, None)
            else:
                marks[key] = mark
        dead = (_read_dead_letter(codec, r.value) for r in kafka.read_whole(topics.DEAD_LETTERS))
        p = plan(dead, marks, selection)
        # Settle interrupted replays first: published or not, the copy says so itself.
        landed = kafka.find_replayed(p.interrupted)
        summary = Summary(skipped=len(p.done), empty=len(p.empty), not_found=len(p.not_found))
        finished: list[tuple[DeadLetter, Mark]] = []
        for d, mark in p.interrupted:
            if d.dead_letter_id in landed:
                finished.append((d, Mark(DONE, mark.topic, mark.partition, mark.from_offset,
                                         landed[d.dead_letter_id], _now())))  # fmt: skip
            else:
                p.replay.append(d)
        summary.skipped += len(finished)
        if dry_run:
            for d in p.replay:
                echo(json.dumps({"replay": d.describe()}, ensure_ascii=False))
            summary.replayed = len(p.replay)
            return summary
        kafka.write_marks(replays, finished)
        for start in range(0, len(p.replay), CHUNK):
            summary.replayed += kafka.publish(replays, p.replay[start : start + CHUNK])
    return summary


def _read_dead_letter(codec: SchemaRegistry, value: bytes | None) -> DeadLetter:
    try:
        return DeadLetter.from_wire(codec.decode("herald.v1.DeadLetter", value or b""))
    except CodecError as exc:
        raise HeraldError(f"unreadable record on {topics.DEAD_LETTERS}: {exc}") from None


def _now() -> int:
    return time.time_ns() // 1_000_000


class _Kafka:
    """The clients one replay run uses: a group-less consumer and a retry-less producer."""

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaConsumer

        from pipeline.clients import producer

        self.settings = settings
        security = settings.security.kafka_python_config()
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.broker, enable_auto_commit=False, **security
        )
        # No retries: a retry after a lost acknowledgement would publish a second copy.
        # A failed send stops the run; its intent stays pending for the next run to settle.
        self.producer = producer(settings, enable_idempotence=False, retries=0, linger_ms=0)

    def __enter__(self) -> _Kafka:
        return self

    def __exit__(self, *exc: object) -> None:
        self.producer.close()
        self.consumer.close()

    def partitions(self, topic: str) -> list[int]:
        deadline = time.monotonic() + 10
        while not (found := self.consumer.partitions_for_topic(topic)):
            if time.monotonic() > deadline:
                raise BrokerError(f"topic {topic} not found on {self.settings.broker}")
            time.sleep(0.2)
        return sorted(found)

    def read_whole(self, topic: str) -> Iterator[Any]:
        """Yield every record of a topic, from the beginning to its end now."""
        from kafka import TopicPartition

        tps = [TopicPartition(topic, p) for p in self.partitions(topic)]
        yield from self._read(tps, dict.fromkeys(tps))

    def _read(self, tps: list[Any], start: Mapping[Any, int | None]) -> Iterator[Any]:
        """Read partitions from `start` (None: the beginning) to their end.

        The reported end offset can fall short of the real one (the embedded broker
        reports the start of the last record batch): reach it, then drain what the
        fetch holds.
        """
        self.consumer.assign(tps)
        for tp in tps:
            offset = start[tp]
            if offset is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)
        ends = self.consumer.end_offsets(tps)
        last = time.monotonic()
        while not all(self.consumer.position(tp) >= ends[tp] for tp in tps):
            polled = self.consumer.poll(timeout_ms=300)
            for records in polled.values():
                yield from records
            if polled:
                last = time.monotonic()
            elif time.monotonic() - last > 30:
                raise BrokerError(f"no progress reading {tps[0].topic} for 30 s")
        # The rest of the last batch came with the fetch that reached the reported end.
        while polled := self.consumer.poll(timeout_ms=0):
            for records in polled.values():
                yield from records

    def find_replayed(self, interrupted: list[tuple[DeadLetter, Mark]]) -> dict[str, int]:
        """Return {dead_letter_id: offset} of the interrupted replays that did land."""
        from kafka import TopicPartition

        wanted: dict[Any, set[str]] = {}
        start: dict[Any, int] = {}
        for d, mark in interrupted:
            tp = TopicPartition(mark.topic, mark.partition)
            wanted.setdefault(tp, set()).add(d.dead_letter_id)
            start[tp] = min(start.get(tp, mark.from_offset), mark.from_offset)
        landed: dict[str, int] = {}
        for tp, ids in wanted.items():
            for r in self._read([tp], start):
                for name, value in r.headers or ():
                    replay_of = value.decode(errors="replace") if value else ""
                    if name == REPLAY_HEADER and replay_of in ids:
                        landed.setdefault(replay_of, r.offset)
        return landed

    def write_marks(self, replays: str, marks: Iterable[tuple[DeadLetter, Mark]]) -> None:
        futures = [
            self.producer.send(replays, key=d.dead_letter_id.encode(), value=m.encode())
            for d, m in marks
        ]
        self.producer.flush()
        try:
            for f in futures:
                f.get()  # raises if the broker did not acknowledge it
        except Exception as exc:
            raise BrokerError(
                f"{replays} did not acknowledge a mark ({type(exc).__name__}); nothing is "
                "lost: run the same replay again"
            ) from None

    def publish(self, replays: str, chunk: list[DeadLetter]) -> int:
        """Intent, copy, done for a chunk of dead letters; return how many were published."""
        from kafka import TopicPartition

        tps = {TopicPartition(d.source_topic, d.source_partition) for d in chunk}
        ends = self.consumer.end_offsets(list(tps))
        now = _now()
        intents = [
            (d, Mark(PENDING, d.source_topic, d.source_partition,
                     ends[TopicPartition(d.source_topic, d.source_partition)], at=now))
            for d in chunk
        ]  # fmt: skip
        self.write_marks(replays, intents)
        log.info("replay: %d intent(s) recorded", len(intents))
        sent = [
            (d, mark, self.producer.send(
                d.source_topic, key=d.key, value=d.value, partition=d.source_partition,
                headers=[(REPLAY_HEADER, d.dead_letter_id.encode())],
            ))
            for d, mark in intents
        ]  # fmt: skip
        self.producer.flush()
        log.info("replay: %d copy(ies) published", len(sent))
        done: list[tuple[DeadLetter, Mark]] = []
        failed = 0
        for d, mark, future in sent:
            try:
                offset = future.get().offset
            except Exception:  # any send failure: leave the intent pending
                failed += 1
                continue
            done.append((d, Mark(DONE, mark.topic, mark.partition, mark.from_offset, offset,
                                 _now())))  # fmt: skip
        self.write_marks(replays, done)
        log.info("replay: %d replay(s) marked done", len(done))
        if failed:
            raise BrokerError(
                f"{failed} replay(s) not acknowledged by the broker; they stay pending. "
                "Run the same replay again: it checks whether each one landed before "
                "publishing it"
            )
        return len(done)

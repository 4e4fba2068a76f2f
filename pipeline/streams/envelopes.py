"""Many Kafka records per faust event: one envelope per partition and fetch.

faust hands every Kafka record to a stream as an event of its own: a message object,
the conductor's callback, a queue put and get, the stream's processors and an ack,
half a dozen asyncio tasks and futures in all. That machinery cost a worker ~400 us a
record, more than ten times what Herald's own work on a signal costs. Herald's agents
work on batches anyway, so the worker's consumer wraps all the records one fetch
returned for a partition in one `Envelope`, delivered as one faust event whose offset
is the last record's. The stages unwrap it (`records_of`).

Commits stay exact. faust commits a partition up to its first offset nobody acked;
the offsets an envelope stands for, but for the last, are marked done as a "gap"
(faust's own bookkeeping for offsets it never sees, as after compaction), so acking
the envelope acks every record in it, and none before. (faust's fetch loop marks most
of that gap itself, from the jump between two messages' offsets; it misses the head of
a partition's first envelope, which its commit logic then tolerates by accident of an
off-by-one. Marking the gap here does not rely on either.)

Changelog partitions get envelopes too: table recovery tracks what it has read by the
event's offset (the envelope's last), and `EnvelopeTable` unwraps them where faust
hands a batch of changelog events to the store. A worker replayed a changelog at about
3,400 records a second one faust event at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

_installed = False


class Envelope(tuple[Any, ...]):
    """The records (aiokafka `ConsumerRecord`s) one fetch returned for one partition."""

    __slots__ = ()


def records_of(value: Any) -> Sequence[Any] | None:
    """Return the records an event's value wraps, or None for a plain record's value."""
    return value if isinstance(value, Envelope) else None


def envelope_message(tp: Any, batch: Sequence[Any], generation_id: int) -> Any:
    """Return the faust message standing for `batch`: the last record's offset and time."""
    from faust.types.tuples import ConsumerMessage

    last = batch[-1]
    stamp: Any = last.timestamp / 1000.0 if last.timestamp is not None else None
    value: Any = Envelope(batch)  # never bytes on the wire: faust's raw codec passes it on
    size = sum(r.serialized_value_size for r in batch)
    return ConsumerMessage(
        tp.topic, tp.partition, last.offset, stamp, last.timestamp_type, [], None, value,
        None, 0, size, tp, generation_id=generation_id,
    )  # fmt: skip


def record_message(tp: Any, r: Any) -> Any:
    """Return a faust message for one record of an envelope (faust's `_to_message`)."""
    from faust.types.tuples import ConsumerMessage

    stamp: Any = r.timestamp / 1000.0 if r.timestamp is not None else None
    return ConsumerMessage(
        r.topic, r.partition, r.offset, stamp, r.timestamp_type, r.headers, r.key, r.value,
        r.checksum, r.serialized_key_size, r.serialized_value_size, tp,
    )  # fmt: skip


class ChangelogRecord:
    """One record of a changelog envelope, as the stores read a changelog event."""

    __slots__ = ("key", "message", "value")

    def __init__(self, message: Any) -> None:
        self.message, self.key, self.value = message, message.key, message.value


def unwrap_changelog(batch: Iterable[Any]) -> Iterator[Any]:
    """Yield a batch of changelog events with every envelope replaced by its records."""
    for event in batch:
        wrapped = records_of(event.message.value)
        if wrapped is None:
            yield event
            continue
        tp = event.message.tp
        for r in wrapped:
            yield ChangelogRecord(record_message(tp, r))


def envelope_table() -> type:
    """Return faust's Table class, reading changelog envelopes when it recovers."""
    import faust

    class EnvelopeTable(faust.Table):  # type: ignore[type-arg]
        def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
            super().apply_changelog_batch(list(unwrap_changelog(batch)))

    return EnvelopeTable


def install_envelopes() -> None:
    """Make faust's consumer deliver one envelope per partition and fetch."""
    global _installed
    if _installed:
        return
    from faust.transport.consumer import Consumer
    from faust.types import TP

    async def getmany(self: Any, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        # faust 0.15's Consumer.getmany, one message per partition instead of per record.
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            try:  # as faust does: a fetch that lands while flow is stopped is sought back
                await self.perform_seek()
            except Exception as exc:
                self.log.warning(f"exception performing seek when flow not active {exc}")
            return
        acking = self.app.topics.acks_enabled_for
        for tp, batch in records.items():
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                break
            if not batch or not (
                active_partitions is None
                or tp in active_partitions
                or tp in self._buffered_partitions
            ):
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            first, last = batch[0], batch[-1]
            if last.offset > first.offset and acking(tp.topic):
                await self._add_gap(tp, first.offset, last.offset - 1)
            yield tp, envelope_message(tp, batch, generation_id)

    Consumer.getmany = getmany  # type: ignore[method-assign]
    _installed = True

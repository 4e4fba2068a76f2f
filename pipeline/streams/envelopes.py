"""Many Kafka records per faust event: one envelope per partition and fetch.

faust hands every Kafka record to a stream as an event of its own: a message object,
the conductor's callback, a queue put and get, the stream's processors and an ack,
half a dozen asyncio tasks and futures in all. That machinery cost a worker ~400 us a
record, more than ten times what Herald's own work on a signal costs. Herald's agents
work on batches anyway, so the worker's consumer wraps all the records one fetch
returned for a partition in one `Envelope`, delivered as one faust event whose offset
is the last record's. The stages unwrap it (`records_of`).

Commits stay exact, and are decided when an envelope is acked, not when it is fetched:
acking an envelope the agent has handled (`mark_handled`) marks every offset from its
first record to its last as done, as acking each record would; acking one it has not
handled (faust acks events it skips, as after a rebalance; a batch that failed) marks
nothing, so its records are read again after the next seek. faust's own bookkeeping
of offsets it never sees ("gaps") would mark an envelope's records done the moment it
is fetched: the consumer tells faust's fetch loop the envelope follows the record
before its last, and marks only the holes between envelopes (offsets with no record)
itself. This patches faust's consumer for the whole process: any faust app in it
gets envelopes.

Changelog partitions get envelopes too: table recovery tracks what it has read by the
event's offset (the envelope's last), and `EnvelopeTable` unwraps them where faust
hands a batch of changelog events to the store. A worker replayed a changelog at about
3,400 records a second one faust event at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

_installed = False


@dataclass(eq=False, slots=True)
class Envelope:
    """The records (aiokafka `ConsumerRecord`s) one fetch returned for one partition."""

    records: Sequence[Any]
    handled: bool = False  # set by the agent once every output of the records is written


def records_of(value: Any) -> Sequence[Any] | None:
    """Return the records an event's value wraps, or None for a plain record's value."""
    return value.records if isinstance(value, Envelope) else None


def mark_handled(event: Any) -> None:
    """Say that an event's records are done with: acking it then commits them."""
    value = event.message.value
    if isinstance(value, Envelope):
        value.handled = True


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


async def prepare_envelope(
    consumer: Any, tp: Any, batch: Sequence[Any], acking: bool
) -> Sequence[Any]:
    """Ready a fetch's records of one partition for delivery as an envelope; return them.

    Records below faust's read offset are dropped, as faust drops records it has handed
    over already. For acking topics, offsets between the last record handed over and the
    envelope, where there is no record (compaction, transaction markers), are marked done,
    and faust's read offset is put just before the envelope's last record: its fetch loop
    would otherwise mark the whole jump, the envelope's own records included, as a gap,
    done before they are handled.
    """
    read = consumer._read_offset[tp]
    if read is not None and batch[0].offset < read:
        batch = [r for r in batch if r.offset >= read]
        if not batch:
            return batch
    first, last = batch[0].offset, batch[-1].offset
    if acking:
        if read is not None and first > read + 1:
            await consumer._add_gap(tp, read + 1, first - 1)
        consumer._read_offset[tp] = last - 1
    return batch


def install_envelopes() -> None:
    """Make faust's consumer deliver one envelope per partition and fetch."""
    global _installed
    if _installed:
        return
    from faust.transport.consumer import Consumer
    from faust.types import TP
    from faust.types.tuples import ack_lock
    from mode.utils.futures import notify

    original_ack = Consumer.ack

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
            batch = await prepare_envelope(self, tp, batch, acking(tp.topic))
            if batch:
                yield tp, envelope_message(tp, batch, generation_id)

    def ack(self: Any, message: Any) -> bool:
        # faust's Consumer.ack for an envelope: every offset it covers, if it was handled.
        envelope = message.value
        if not isinstance(envelope, Envelope):
            return original_ack(self, message)
        with ack_lock:
            if message.acked:
                return False
            message.acked = True
            self._unacked_messages.discard(message)
            try:
                if not envelope.handled or not self.app.topics.acks_enabled_for(message.topic):
                    return False
                tp = message.tp
                committed = self._committed_offset[tp]
                acked, acked_index = self._acked[tp], self._acked_index[tp]
                start = envelope.records[0].offset
                if committed is not None:
                    start = max(start, committed)
                for offset in range(start, message.offset + 1):
                    if offset not in acked_index:
                        acked_index.add(offset)
                        acked.append(offset)
                self._n_acked += 1
                return True
            finally:
                notify(self._waiting_for_ack)

    Consumer.getmany = getmany  # type: ignore[method-assign]
    Consumer.ack = ack  # type: ignore[method-assign]
    _installed = True

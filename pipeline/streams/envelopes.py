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
the envelope acks every record in it, and none before.

Changelog partitions are left one record per event: faust's table recovery reads them
record by record and tracks what it has applied by their offsets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

_installed = False


class Envelope(tuple[Any, ...]):
    """The records (aiokafka `ConsumerRecord`s) one fetch returned for one partition."""

    __slots__ = ()


def records_of(value: Any) -> Sequence[Any] | None:
    """Return the records an event's value wraps, or None for a plain record's value."""
    return value if isinstance(value, Envelope) else None


def install_envelopes() -> None:
    """Make faust's consumer deliver one envelope per partition and fetch."""
    global _installed
    if _installed:
        return
    from faust.transport.consumer import Consumer
    from faust.types import TP
    from faust.types.tuples import ConsumerMessage

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
            if self._is_changelog_tp(tp):
                for record in batch:
                    yield tp, self._to_message(tp, record)
                continue
            first, last = batch[0], batch[-1]
            if last.offset > first.offset and acking(tp.topic):
                await self._add_gap(tp, first.offset, last.offset - 1)
            # As faust's _to_message, but the value is the envelope (never bytes on the wire).
            stamp: Any = last.timestamp / 1000.0 if last.timestamp is not None else None
            value: Any = Envelope(batch)
            yield tp, ConsumerMessage(
                tp.topic, tp.partition, last.offset, stamp, last.timestamp_type, [], None,
                value, None, 0, sum(r.serialized_value_size for r in batch), tp,
                generation_id=generation_id,
            )  # fmt: skip

    Consumer.getmany = getmany  # type: ignore[method-assign]
    _installed = True

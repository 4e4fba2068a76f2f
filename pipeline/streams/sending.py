"""Writing a stage's outputs: whole record batches, state before the outputs it explains.

Two rules hold for every chunk a stage hands over: its changelog records (the state it
decided with) are acknowledged before its outputs are sent, so a replay after a crash
finds what was decided and repeats it; and outputs leave in the order they were made.
Nothing else needs waiting for, so a stage goes on deciding its next chunk while the
broker writes the last one: waiting for each chunk's two round trips left a worker idle
a quarter of the time.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from faust.types import TP

from pipeline.metrics import Metrics
from pipeline.streams.stages import OutRecord, partition_of

# Chunks written but not yet acknowledged, at most, before a stage waits for the oldest.
IN_FLIGHT = 3


@dataclass
class Pending:
    """Record batches handed to the producer: (acknowledgement, records in the batch)."""

    sent: list[tuple[asyncio.Future[Any], int]]


class BulkSender:
    """Sends records as one Kafka record batch per partition, and counts them.

    faust's `Producer.send` (and aiokafka's `send` under it) is one Python call chain and
    one future per record, which cost the worker more than deciding; aiokafka's batch
    builder appends a record in C. Records without a partition go where Kafka's default
    partitioner puts their key (murmur2), as `send` would. Batches handed to the
    producer reach each partition in the order they were handed over.
    """

    def __init__(self, producer: Any, metrics: Metrics) -> None:
        self._producer = producer  # a callable returning the started aiokafka producer
        self.metrics = metrics

    async def enqueue(self, out: Sequence[OutRecord]) -> Pending:
        """Hand records to the producer, in batches per partition; do not wait for the broker."""
        producer = self._producer()
        groups: dict[tuple[str, int], list[OutRecord]] = defaultdict(list)
        partitions: dict[str, int] = {}  # from the producer's metadata, as it is now
        for r in out:
            partition = r.partition
            if partition is None:
                if r.topic not in partitions:
                    partitions[r.topic] = len(await producer.partitions_for(r.topic))
                partition = partition_of(r.key, partitions[r.topic])
            groups[r.topic, partition].append(r)
        pending = Pending([])
        for (topic, partition), records in groups.items():
            batch, count = producer.create_batch(), 0
            for r in records:
                if batch.append(key=r.key, value=r.value, timestamp=None) is None:
                    # Full: send it and start another (a batch always takes its first record).
                    sent = await producer.send_batch(batch, topic, partition=partition)
                    pending.sent.append((sent, count))
                    batch, count = producer.create_batch(), 0
                    batch.append(key=r.key, value=r.value, timestamp=None)
                count += 1
            sent = await producer.send_batch(batch, topic, partition=partition)
            pending.sent.append((sent, count))
        return pending

    async def acknowledged(self, pending: Pending) -> dict[tuple[str, int], int]:
        """Wait until the broker has every batch; return the last offset written per partition."""
        written: dict[tuple[str, int], int] = {}
        metas = await asyncio.gather(*(f for f, _ in pending.sent))
        for meta, (_, count) in zip(metas, pending.sent, strict=True):
            tp = (meta.topic, meta.partition)
            written[tp] = max(written.get(tp, -1), meta.offset + count - 1)
            self.metrics.records_produced.labels(topic=meta.topic).inc(count)
        return written

    async def send(self, out: Sequence[OutRecord]) -> dict[tuple[str, int], int]:
        """Send records and wait until the broker has acknowledged all; return last offsets."""
        return await self.acknowledged(await self.enqueue(out)) if out else {}


class ChunkWriter:
    """Writes a stage's chunks, batch after batch: state, then outputs, without stalling it.

    `write` hands a chunk's changelog records to the producer at once and returns; a task
    hands the chunk's outputs over once that state is acknowledged and the previous
    chunk's outputs are handed over (the producer keeps the order of what it is handed,
    per partition, retries included: one request per broker at a time). `written` is
    the last chunk's task so far: it ends once everything written before it is
    acknowledged, and the caller commits what it read only then. A failed send fails
    that task and every later one; a chunk whose state failed hands over no outputs,
    nor does any chunk after it.
    """

    def __init__(self, sender: BulkSender, table: Any) -> None:
        self.sender, self.table = sender, table
        self._tasks: deque[Chunk] = deque()

    async def write(self, changes: list[OutRecord], out: list[OutRecord]) -> None:
        if not changes and not out:
            return  # `written` still ends with the chunks before
        while len(self._tasks) >= IN_FLIGHT:
            await self._tasks.popleft().done
        state = await self.sender.enqueue(changes)
        before = self._tasks[-1] if self._tasks else None
        handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done = asyncio.ensure_future(self._outputs(state, before, out, handed))
        # A failure reaches every later chunk, and the last is awaited: an earlier one's
        # own exception need not be.
        done.add_done_callback(_retrieved)
        self._tasks.append(Chunk(handed, done))
        # Handing batches to the producer need not suspend the stage: give the producer's
        # sender (and the other agent) a turn now, not when the whole batch is done.
        await asyncio.sleep(0)

    async def _outputs(
        self,
        state: Pending,
        before: Chunk | None,
        out: list[OutRecord],
        handed: asyncio.Future[None],
    ) -> None:
        try:
            for (topic, partition), offset in (await self.sender.acknowledged(state)).items():
                # A persistent store (RocksDB) recovers from here after a restart instead
                # of replaying the whole changelog; the in-memory store ignores it.
                self.table.data.set_persisted_offset(TP(topic, partition), offset)
            if before is not None:
                await before.handed  # fails if an earlier chunk failed: nothing out of order
            pending = await self.sender.enqueue(out)
        except BaseException as exc:
            handed.set_exception(exc)
            handed.exception()  # retrieved: a failure is raised by `done`, not logged twice
            raise
        handed.set_result(None)
        await self.sender.acknowledged(pending)
        if before is not None:
            await before.done

    def written(self) -> asyncio.Future[None]:
        """Return a future that ends once every chunk written so far is acknowledged."""
        if self._tasks:
            return self._tasks[-1].done
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _retrieved(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True)
class Chunk:
    """A chunk on its way: its outputs handed to the producer, then all acknowledged."""

    handed: asyncio.Future[None]
    done: asyncio.Future[None]

"""Per-partition progress: notice an input partition that stopped moving while records wait.

Stream processors are known to stall silently: a partition left paused after a
rebalance, prefetched records dropped, a fetch that never comes back. The worker
looks at every assigned input partition once a second and climbs this ladder:

1. The position moved, or nothing waits (lag 0): healthy; a stall mark is cleared.
2. Records wait and the position has not moved for `stall_after` seconds: stalled.
   Log a WARNING (topic, partition, position, lag; never record contents), set
   herald_partition_stalled, count herald_stalls_total, and nudge the consumer:
   resume the partition if faust left it paused, and seek it to its position so
   the next fetch starts afresh from the broker.
3. Still stalled `stall_after` seconds after the nudge: the worker reports itself
   not live (/healthz 503), so the orchestrator restarts it; the restarted worker
   rejoins the group and resumes from the committed offsets.

Nothing is judged while partitions are being assigned or tables recovered. Lag is
the broker's end offset minus the position, clamped at 0. The embedded broker
under-reports end offsets (base offset of the last batch + 1), so there lag is a
lower bound: a stall inside a partition's last batch goes unnoticed, none is invented.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


@dataclass
class PartitionProgress:
    """What the detector remembers about one partition."""

    position: int
    moved_at: float
    lag: int = 0
    stalled_at: float | None = None  # when the stall was noticed (and the consumer nudged)


@dataclass(frozen=True)
class ProgressReport(Generic[K]):
    """What one sample changed: partitions to nudge, to give up on, and cleared."""

    lags: Mapping[K, int]
    newly_stalled: tuple[K, ...] = ()
    cleared: tuple[K, ...] = ()
    stalled: frozenset[K] = frozenset()
    unrecovered_since: float | None = None  # earliest stall not cured by its nudge


@dataclass
class StallDetector(Generic[K]):
    """Pure stall detection over (position, end offset) samples; the clock is passed in."""

    stall_after: float
    clock: Callable[[], float]
    partitions: dict[K, PartitionProgress] = field(default_factory=dict)

    def reset(self) -> None:
        """Forget everything (partitions are being reassigned or recovered)."""
        self.partitions.clear()

    def update(self, samples: Mapping[K, tuple[int, int]]) -> ProgressReport[K]:
        """Take one (position, end offset) per assigned partition; report what changed."""
        now = self.clock()
        for gone in set(self.partitions) - set(samples):
            del self.partitions[gone]
        newly: list[K] = []
        cleared: list[K] = []
        for key, (position, end) in samples.items():
            lag = max(0, end - position)
            state = self.partitions.get(key)
            if state is None:
                self.partitions[key] = PartitionProgress(position, now, lag)
                continue
            state.lag = lag
            if position != state.position or lag == 0:
                state.position, state.moved_at = position, now
                if state.stalled_at is not None:
                    state.stalled_at = None
                    cleared.append(key)
            elif state.stalled_at is None and now - state.moved_at >= self.stall_after:
                state.stalled_at = now
                newly.append(key)
        stalled = frozenset(k for k, s in self.partitions.items() if s.stalled_at is not None)
        unrecovered = [
            s.stalled_at
            for s in self.partitions.values()
            if s.stalled_at is not None and now - s.stalled_at >= self.stall_after
        ]
        return ProgressReport(
            lags={k: s.lag for k, s in self.partitions.items()},
            newly_stalled=tuple(newly),
            cleared=tuple(cleared),
            stalled=stalled,
            unrecovered_since=min(unrecovered) if unrecovered else None,
        )


def position_of(consumer: Any, tp: Any) -> int | None:
    """Return the next offset faust will hand its streams for `tp`, if it knows one."""
    read = consumer._read_offset.get(tp)  # last offset handed to a stream...
    committed = consumer._committed_offset.get(tp)
    if read is None:
        return None if committed is None else int(committed)
    # ...except right after a seek to the committed offset, where it is the next one.
    return int(read) if read == committed else int(read) + 1


def recovering_partitions(app: Any) -> int:
    """Return how many changelog partitions are still being read into tables."""
    if not app.in_recovery:
        return 0
    remaining = app.tables.recovery.active_remaining()
    return sum(1 for left in remaining.values() if left > 0)


def debug_pauses(path: Path | None) -> set[tuple[str, int]]:
    """Read 'topic partition' lines from the debug pause file (tests only)."""
    if path is None:
        return set()
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return set()
    pauses = set()
    for line in lines:
        topic, _, partition = line.strip().rpartition(" ")
        if topic and partition.isdigit():
            pauses.add((topic, int(partition)))
    return pauses


class Offsets:
    """Beginning and end offsets from the broker, with a group-less client of its own.

    Not the worker's faust consumer: that one may be the thing that is stuck.
    """

    def __init__(self, bootstrap: str, client_config: dict[str, Any]) -> None:
        self.bootstrap, self.client_config = bootstrap, client_config
        self.client: Any = None

    async def fetch(self, tps: list[Any], timeout: float = 2.0) -> tuple[dict[Any, int], ...]:
        """Return (beginning, end) offsets by partition; empty maps if the broker is slow."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        try:
            if self.client is None:
                self.client = AIOKafkaConsumer(
                    bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                    **self.client_config,
                )  # fmt: skip
                await asyncio.wait_for(self.client.start(), timeout)
            ours = {TopicPartition(tp.topic, tp.partition): tp for tp in tps}
            begin = await asyncio.wait_for(self.client.beginning_offsets(list(ours)), timeout)
            end = await asyncio.wait_for(self.client.end_offsets(list(ours)), timeout)
            return {ours[k]: v for k, v in begin.items()}, {ours[k]: v for k, v in end.items()}
        except Exception:  # a broker that does not answer now is the broker probe's concern
            client, self.client = self.client, None
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
            return {}, {}


@dataclass
class ProgressWatch:
    """The shell around the detector: samples the worker's consumer, acts on the report."""

    app: Any
    inputs: set[str]  # the topics the agents read
    detector: StallDetector[Any]
    offsets: Offsets
    metrics: Any
    health: Any
    ready: Callable[[], bool]  # partitions assigned and tables recovered
    debug_pause_file: Path | None = None
    shown: set[Any] = field(default_factory=set)  # partitions with lag labels exported
    paused_for_debug: set[tuple[str, int]] = field(default_factory=set)

    async def run(self) -> None:
        """Check once a second, forever."""
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.check()
            except Exception as exc:  # a watchdog must never be what stops the worker
                log.warning("progress check failed: %s", type(exc).__name__)

    async def check(self) -> None:
        """Sample every assigned input partition once; log, count and nudge stalls."""
        consumer, metrics = self.app.consumer, self.metrics
        metrics.partitions_recovering.set(recovering_partitions(self.app))
        assigned = sorted(
            (tp for tp in consumer.assignment() if tp.topic in self.inputs),
            key=lambda tp: (tp.topic, tp.partition),
        )
        for topic in self.inputs:
            metrics.partitions_assigned.labels(topic).set(
                sum(1 for tp in assigned if tp.topic == topic)
            )
        for tp in self.shown - set(assigned):
            for gauge in (metrics.consumer_lag, metrics.partition_stalled):
                with contextlib.suppress(KeyError):
                    gauge.remove(tp.topic, str(tp.partition))
        self.shown = set(assigned)
        if not self.ready():
            self.detector.reset()  # paused on purpose while tables recover: not a stall
            self.health.stalled_since = None
            return
        self.apply_debug_pauses(consumer, assigned)
        begin, end = await self.offsets.fetch(assigned)
        samples = {}
        for tp in assigned:
            position = position_of(consumer, tp)
            if position is None:
                position = begin.get(tp)
            if position is not None and tp in end:
                samples[tp] = (position, end[tp])
        report = self.detector.update(samples)
        for tp, lag in report.lags.items():
            # Touched so the counter exists at 0: a rate over no series is no answer.
            metrics.stalls.labels(tp.topic, str(tp.partition))
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
            metrics.partition_stalled.labels(tp.topic, str(tp.partition)).set(
                1 if tp in report.stalled else 0
            )
        for tp in report.newly_stalled:
            position, _ = samples[tp]
            log.warning(
                "partition %s[%d] stalled: position %d, lag %d, no progress for %.0f s; "
                "resuming it and fetching again from its position",
                tp.topic, tp.partition, position, report.lags[tp], self.detector.stall_after,
            )  # fmt: skip
            metrics.stalls.labels(tp.topic, str(tp.partition)).inc()
            await nudge(consumer, tp, position)
        for tp in report.cleared:
            log.info("partition %s[%d] moves again", tp.topic, tp.partition)
        self.health.stalled_since = report.unrecovered_since

    def apply_debug_pauses(self, consumer: Any, assigned: list[Any]) -> None:
        """Pause, once, each assigned partition the debug pause file names (tests only)."""
        wanted = debug_pauses(self.debug_pause_file) - self.paused_for_debug
        for tp in assigned:
            if (tp.topic, tp.partition) in wanted:
                self.paused_for_debug.add((tp.topic, tp.partition))
                log.warning("debug: pausing %s[%d] in the consumer", tp.topic, tp.partition)
                consumer.pause_partitions([tp])


async def nudge(consumer: Any, tp: Any, position: int, timeout: float = 5.0) -> None:
    """Resume `tp` if faust left it paused, and make the next fetch start at `position`."""
    if tp in consumer._paused_partitions:
        consumer.resume_partitions([tp])
    thread = consumer._thread

    async def seek() -> None:
        # aiokafka's seek alone, in the consumer's own thread; faust's `seek` would also
        # move its read offset, which is what progress is measured by here.
        thread._ensure_consumer().seek(tp, position)

    try:
        await asyncio.wait_for(thread.call_thread(seek), timeout)
    except Exception as exc:  # the ladder's next step (not live) covers a failed nudge
        log.warning("could not seek %s[%d]: %s", tp.topic, tp.partition, type(exc).__name__)

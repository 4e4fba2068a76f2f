"""Prometheus metrics, built by a factory that takes the registry (tests pass their own).

Labels stay low-cardinality: topic, stage, category, reason. Never a user, number,
key or event id.
"""

from __future__ import annotations

import itertools
import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# 1 ms to 10 s and beyond: decisions are fast, but a held-back backlog is not.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip

# A worker's young collections (GC_YOUNG_THRESHOLD objects at a time) take 0.1-0.3 s, an
# older generation's up to a second. Every thread waits: each one is a latency spike.
GC_PAUSE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
GC_GENERATIONS = 3


class GcPauses(Collector):
    """herald_gc_pause_seconds: how long each garbage collection held the process.

    `on_gc` goes in `gc.callbacks`. It runs inside the collector, which can start in the
    middle of any code, prometheus_client's own included, whose locks are not reentrant:
    so it takes no lock and swaps in a new tuple per generation, which a scrape reads whole.
    """

    def __init__(
        self,
        buckets: tuple[float, ...] = GC_PAUSE_BUCKETS,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._bounds, self._clock = buckets, clock
        self._les = [floatToGoString(b) for b in (*buckets, math.inf)]  # type: ignore[no-untyped-call]
        empty = ((0,) * (len(buckets) + 1), 0.0)  # per bucket (+Inf last), not cumulative
        self._seen: list[tuple[tuple[int, ...], float]] = [empty] * GC_GENERATIONS
        self._started = 0.0

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self._clock()
            return
        took = self._clock() - self._started
        generation = info["generation"]
        counts, total = self._seen[generation]
        i = bisect_left(self._bounds, took)  # the first bucket whose bound is >= took
        self._seen[generation] = ((*counts[:i], counts[i] + 1, *counts[i + 1 :]), total + took)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "herald_gc_pause_seconds",
            "Time each garbage collection held the worker (every thread waits), by generation.",
            labels=["generation"],
        )
        for generation, (counts, total) in enumerate(list(self._seen)):
            buckets = list(zip(self._les, itertools.accumulate(counts), strict=True))
            family.add_metric([str(generation)], buckets, total)
        yield family


@dataclass(frozen=True)
class Metrics:
    events_consumed: Counter
    records_produced: Counter
    deliveries: Counter
    suppressions: Counter
    dead_letters: Counter
    decision_latency: Histogram
    stage_latency: Histogram
    blocked_links: Counter
    state_entries: Gauge
    state_evictions: Counter
    policy: Info
    ready: Gauge
    broker_reachable: Gauge
    consumer_lag: Gauge
    partitions_assigned: Gauge
    partitions_recovering: Gauge
    partition_stalled: Gauge
    stalls: Counter
    gc_pauses: GcPauses
    registry: CollectorRegistry


def build_metrics(registry: CollectorRegistry | None = None) -> Metrics:
    """Create Herald's metrics in `registry` (a fresh one by default)."""
    if registry is None:
        registry = CollectorRegistry()
        # A fresh registry lacks the default one's process, platform and GC metrics.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    gc_pauses = GcPauses()
    registry.register(gc_pauses)
    return Metrics(
        events_consumed=Counter(
            "herald_events_consumed_total",
            "Records consumed, by input topic.",
            ["topic"],
            registry=registry,
        ),
        records_produced=Counter(
            "herald_records_produced_total",
            "Records written and acknowledged by the broker, by output topic "
            "(changelogs included).",
            ["topic"],
            registry=registry,
        ),
        deliveries=Counter(
            "herald_deliveries_total",
            "Delivery records emitted, by message category and event kind.",
            ["category", "kind"],
            registry=registry,
        ),
        suppressions=Counter(
            "herald_suppressions_total",
            "Suppression records emitted, by reason and category.",
            ["reason", "category"],
            registry=registry,
        ),
        dead_letters=Counter(
            "herald_dead_letters_total",
            "Records sent to dead-letters, by stage and error type.",
            ["stage", "error_type"],
            registry=registry,
        ),
        decision_latency=Histogram(
            "herald_decision_latency_seconds",
            "From the business event's occurred_at to the decision for a recipient.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        stage_latency=Histogram(
            "herald_stage_latency_seconds",
            "Time a stage spends on one batch, from taking it to its outputs acknowledged.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        blocked_links=Counter(
            "herald_blocked_links_total",
            "Messages not delivered for a link to a blocked domain, by sending business "
            "(businesses are few and public; operators need to see who sends them).",
            ["business"],
            registry=registry,
        ),
        state_entries=Gauge(
            "herald_state_entries",
            "Keys held in a state table on this worker (its assigned partitions).",
            ["table"],
            registry=registry,
        ),
        state_evictions=Counter(
            "herald_state_evictions_total",
            "State entries dropped by TTL pruning (past outcomes, ledgers, windows), by table.",
            ["table"],
            registry=registry,
        ),
        policy=Info(
            "herald_policy",
            "The policy this worker decides with (its version hash).",
            registry=registry,
        ),
        ready=Gauge(
            "herald_ready",
            "1 when the worker is ready (partitions recovered, reference data, broker up).",
            registry=registry,
        ),
        broker_reachable=Gauge(
            "herald_broker_reachable",
            "1 when the broker answered the worker's last probe.",
            registry=registry,
        ),
        consumer_lag=Gauge(
            "herald_consumer_lag_records",
            "Records waiting on an assigned input partition (a lower bound on the embedded "
            "broker, which under-reports end offsets).",
            ["topic", "partition"],
            registry=registry,
        ),
        partitions_assigned=Gauge(
            "herald_partitions_assigned",
            "Input partitions assigned to this worker, by topic.",
            ["topic"],
            registry=registry,
        ),
        partitions_recovering=Gauge(
            "herald_partitions_recovering",
            "Changelog partitions still being read into this worker's tables.",
            registry=registry,
        ),
        partition_stalled=Gauge(
            "herald_partition_stalled",
            "1 while an input partition has records waiting and its position does not move.",
            ["topic", "partition"],
            registry=registry,
        ),
        stalls=Counter(
            "herald_stalls_total",
            "Stalls noticed on an input partition (each one nudged the consumer).",
            ["topic", "partition"],
            registry=registry,
        ),
        gc_pauses=gc_pauses,
        registry=registry,
    )


def observe_many(histogram: Histogram, amount: float, count: int) -> None:
    """Record `count` observations of the same `amount`, as `count` calls of observe would.

    A batch's candidates share one event and one decision time, hence one latency; one
    observe per candidate cost more than a tenth of deciding it. Uses the histogram's
    bucket counters directly (prometheus_client 0.2x); test_metrics checks the samples
    match `count` observe calls.
    """
    if count <= 0:
        return
    histogram._raise_if_not_observable()  # type: ignore[no-untyped-call]
    histogram._sum.inc(amount * count)
    for i, bound in enumerate(histogram._upper_bounds):
        if amount <= bound:
            histogram._buckets[i].inc(count)
            break

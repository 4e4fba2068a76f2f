"""Metrics helpers: batched observations read exactly like one observation at a time,
and garbage-collection pauses timed from the collector's own callbacks."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.metrics import GcPauses, build_metrics, observe_many

NAME = "herald_decision_latency_seconds"


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    """Bucket counts, count and sum of the decision-latency histogram (no `_created`)."""
    return {
        f"{s.name}{s.labels.get('le', '')}": s.value
        for metric in registry.collect()
        if metric.name == NAME
        for s in metric.samples
        if not s.name.endswith("_created")
    }


@pytest.mark.parametrize("amount", [0.0, 0.0004, 0.001, 0.07, 2.5, 59.9, 61.0, 3600.0])
@pytest.mark.parametrize("count", [1, 3, 1_000])
def test_observe_many_gives_the_samples_of_count_observe_calls(amount: float, count: int) -> None:
    """observe_many(h, a, n) exposes the same buckets and count as n h.observe(a), and sum."""
    one_by_one, batched = CollectorRegistry(), CollectorRegistry()
    m1, m2 = build_metrics(one_by_one), build_metrics(batched)
    for _ in range(count):
        m1.decision_latency.observe(amount)
    observe_many(m2.decision_latency, amount, count)
    expected, got = _samples(one_by_one), _samples(batched)
    # n additions of a float drift from n * a in the last digits; the buckets are exact.
    assert got.pop(f"{NAME}_sum") == pytest.approx(expected.pop(f"{NAME}_sum"))
    assert got == expected
    assert got[f"{NAME}_count"] == count


def test_observe_many_of_nothing_observes_nothing() -> None:
    """A count of zero leaves the histogram untouched."""
    registry = CollectorRegistry()
    observe_many(build_metrics(registry).decision_latency, 1.0, 0)
    assert _samples(registry)[f"{NAME}_count"] == 0


GC = "herald_gc_pause_seconds"


def _gc_samples(registry: CollectorRegistry) -> dict[tuple[str, str, str], float]:
    """(sample name, generation, le) -> value, read back from the exposition text."""
    text = generate_latest(registry).decode()
    return {
        (s.name, s.labels["generation"], s.labels.get("le", "")): s.value
        for family in text_string_to_metric_families(text)
        if family.name == GC
        for s in family.samples
    }


class StepClock:
    """Each call returns the next of `times`."""

    def __init__(self, *times: float) -> None:
        self._times: Iterator[float] = iter(times)

    def __call__(self) -> float:
        return next(self._times)


def test_gc_pauses_fall_in_their_buckets_per_generation() -> None:
    """A 3 ms young collection and a 0.7 s full one: each in its generation's buckets,
    cumulative, with its count and sum; the generation untouched reads zero."""
    registry = CollectorRegistry()
    pauses = GcPauses(clock=StepClock(10.0, 10.003, 20.0, 20.7))
    registry.register(pauses)
    pauses.on_gc("start", {"generation": 0})
    pauses.on_gc("stop", {"generation": 0})
    pauses.on_gc("start", {"generation": 2})
    pauses.on_gc("stop", {"generation": 2})
    got = _gc_samples(registry)
    assert got[(f"{GC}_bucket", "0", "0.001")] == 0
    assert got[(f"{GC}_bucket", "0", "0.005")] == 1
    assert got[(f"{GC}_bucket", "0", "+Inf")] == 1
    assert got[(f"{GC}_count", "0", "")] == 1
    assert got[(f"{GC}_sum", "0", "")] == pytest.approx(0.003)
    assert got[(f"{GC}_bucket", "2", "0.5")] == 0
    assert got[(f"{GC}_bucket", "2", "1.0")] == 1
    assert got[(f"{GC}_sum", "2", "")] == pytest.approx(0.7)
    assert got[(f"{GC}_count", "1", "")] == 0


def test_a_pause_on_a_bound_counts_in_that_bucket_and_a_long_one_only_in_inf() -> None:
    """Buckets are `le`: exactly 10 ms is in the 0.01 bucket; 4 s is past the last bound."""
    registry = CollectorRegistry()
    pauses = GcPauses(clock=StepClock(0.0, 0.01, 0.0, 4.0))
    registry.register(pauses)
    for _ in range(2):
        pauses.on_gc("start", {"generation": 1})
        pauses.on_gc("stop", {"generation": 1})
    got = _gc_samples(registry)
    assert got[(f"{GC}_bucket", "1", "0.005")] == 0
    assert got[(f"{GC}_bucket", "1", "0.01")] == 1
    assert got[(f"{GC}_bucket", "1", "2.5")] == 1
    assert got[(f"{GC}_bucket", "1", "+Inf")] == 2


def test_real_collections_are_timed_through_gc_callbacks() -> None:
    """Hooked into gc.callbacks, an explicit full collection shows up in generation 2."""
    registry = CollectorRegistry()
    metrics = build_metrics(registry)
    gc.callbacks.append(metrics.gc_pauses.on_gc)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(metrics.gc_pauses.on_gc)
    got = _gc_samples(registry)
    assert got[(f"{GC}_count", "2", "")] >= 1
    assert got[(f"{GC}_sum", "2", "")] > 0

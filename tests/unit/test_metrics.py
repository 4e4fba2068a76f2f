"""Metrics helpers: batched observations read exactly like one observation at a time."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from pipeline.metrics import build_metrics, observe_many

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

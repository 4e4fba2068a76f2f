"""Prometheus metrics, built by a factory that takes the registry (tests pass their own).

Labels stay low-cardinality: topic, stage, category, reason. Never a user, number,
key or event id.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# 1 ms to 10 s and beyond: decisions are fast, but a held-back backlog is not.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


@dataclass(frozen=True)
class Metrics:
    events_consumed: Counter
    deliveries: Counter
    suppressions: Counter
    dead_letters: Counter
    decision_latency: Histogram
    blocked_links: Counter
    ready: Gauge
    broker_reachable: Gauge
    registry: CollectorRegistry


def build_metrics(registry: CollectorRegistry | None = None) -> Metrics:
    """Create Herald's metrics in `registry` (a fresh one by default)."""
    registry = registry if registry is not None else CollectorRegistry()
    return Metrics(
        events_consumed=Counter(
            "herald_events_consumed_total",
            "Records consumed, by input topic.",
            ["topic"],
            registry=registry,
        ),
        deliveries=Counter(
            "herald_deliveries_total",
            "Delivery records emitted, by message category.",
            ["category"],
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
        blocked_links=Counter(
            "herald_blocked_links_total",
            "Messages not delivered for a link to a blocked domain, by sending business "
            "(businesses are few and public; operators need to see who sends them).",
            ["business"],
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
        registry=registry,
    )

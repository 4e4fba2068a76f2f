"""How long the worker's consumer lets the broker hold a fetch that finds nothing new.

faust (0.15) creates its aiokafka consumer with `fetch_max_wait_ms=1500`, hard-coded.
Apache Kafka answers a waiting fetch as soon as records arrive, so the wait costs
nothing there; the embedded broker answers only when the wait is over, so a record
published to an idle worker waited up to 1.5 s per consumer hop (a median of ~400 ms,
`python -m bench.fetchwait`), and an outcome is two hops from its event. A short wait
costs an idle worker a few more fetch requests a second.
"""

from __future__ import annotations

from typing import Any

_wait_ms: int | None = None


def set_fetch_wait(consumer: Any, wait_ms: int) -> Any:
    """Give an aiokafka consumer, not yet started, a fetch wait of `wait_ms`."""
    consumer._fetch_max_wait_ms = wait_ms  # read when start() builds its fetcher
    return consumer


def install_fetch_wait(wait_ms: int) -> None:
    """Make faust's worker consumers wait at most `wait_ms` on an empty fetch."""
    global _wait_ms
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    if _wait_ms is None:
        original = AIOKafkaConsumerThread._create_worker_consumer

        def create_worker_consumer(self: Any, transport: Any) -> Any:
            consumer = original(self, transport)
            return set_fetch_wait(consumer, _wait_ms) if _wait_ms is not None else consumer

        AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]
    _wait_ms = wait_ms

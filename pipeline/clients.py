"""Plain Kafka clients (kafka-python) for the CLI, the simulator and tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from pipeline.settings import Settings


def producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """Return a producer that batches and waits for every replica (acks=all)."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.broker,
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "max_request_size": 8 * 1024 * 1024,
        **settings.security.kafka_python_config(),
    }
    config.update(overrides)
    return KafkaProducer(**config)


def read_topic(
    settings: Settings,
    topic: str,
    *,
    partitions: list[int] | None = None,
    from_beginning: bool = True,
    max_records: int | None = None,
    idle_timeout: float | None = 2.0,
    deadline: float | None = None,
) -> Iterator[tuple[bytes | None, bytes, int, int]]:
    """Yield (key, value, partition, offset) from every partition of a topic.

    `partitions` limits the read to those partitions. Stops after `max_records`,
    once nothing new arrived for `idle_timeout` seconds (None: never), or at the
    monotonic `deadline`. Uses no consumer group, so it
    never disturbs the workers' offsets.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=settings.broker,
        enable_auto_commit=False,
        **settings.security.kafka_python_config(),
    )
    try:
        wanted = partitions if partitions is not None else consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(wanted or ())]
        consumer.assign(tps)
        if from_beginning:
            consumer.seek_to_beginning(*tps)
        else:
            consumer.seek_to_end(*tps)
        seen = 0
        last = time.monotonic()
        while True:
            polled = consumer.poll(timeout_ms=200)
            now = time.monotonic()
            for records in polled.values():
                for r in records:
                    yield r.key, r.value, r.partition, r.offset
                    seen += 1
                    if max_records is not None and seen >= max_records:
                        return
            if polled:
                last = now
            elif idle_timeout is not None and now - last > idle_timeout:
                return
            if deadline is not None and now > deadline:
                return
    finally:
        consumer.close()


def partition_count(settings: Settings, topic: str) -> int:
    """Return how many partitions a topic has on the cluster."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.broker, **settings.security.kafka_python_config()
    )
    try:
        return len(consumer.partitions_for_topic(topic) or ())
    finally:
        consumer.close()

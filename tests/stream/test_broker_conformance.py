"""Facts about the embedded broker that Herald depends on or works around.

If a future Tansu build fixes its end-offset defect, the first test fails: then the
recovery guard (pipeline/streams/recovery_guard.py) can be reconsidered.
"""

from __future__ import annotations

import asyncio

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from pipeline.broker import EmbeddedBroker
from pipeline.streams.recovery_guard import true_end_offsets
from pipeline.topics import create_topics

pytestmark = pytest.mark.broker


def _one_batch_of_ten(broker: EmbeddedBroker, topic: str) -> None:
    create_topics(broker.bootstrap, [(topic, 1, {})])
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=500)
    for i in range(10):
        producer.send(topic, key=b"k", value=b"v%d" % i, partition=0)
    producer.flush()  # one produce request: one record batch of ten
    producer.close()


def test_embedded_broker_reports_the_end_of_a_batch_as_its_base_offset_plus_one(
    broker: EmbeddedBroker,
) -> None:
    """Tansu reports end offset 1 after one batch of 10 records, yet all 10 are readable."""
    _one_batch_of_ten(broker, "conformance")
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, consumer_timeout_ms=3000)
    tp = TopicPartition("conformance", 0)
    try:
        assert consumer.end_offsets([tp])[tp] == 1
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        assert [r.offset for r in consumer] == list(range(10))
    finally:
        consumer.close()


def test_the_recovery_guard_finds_the_real_end_offset(broker: EmbeddedBroker) -> None:
    """Reading past the reported end finds offset 10, where faust alone would stop at 1."""
    _one_batch_of_ten(broker, "guarded")
    tp = TopicPartition("guarded", 0)
    ends = asyncio.run(true_end_offsets(broker.bootstrap, {}, {tp: 1}))
    assert ends == {tp: 10}

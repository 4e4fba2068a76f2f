"""Facts about the embedded broker that Herald depends on or works around.

If a future Tansu build fixes its end-offset defect, the first test fails: then the
recovery guard (pipeline/streams/recovery_guard.py) can be reconsidered. If it joins
groups promptly, the join tests fail: then test session timeouts can grow again.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

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


SESSION_MS = 6_000
# A group member in its own process, so that it can be SIGKILLed mid-session.
MEMBER = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer
async def main(bootstrap, group, session_ms):
    c = AIOKafkaConsumer("joins", bootstrap_servers=bootstrap, group_id=group,
                         session_timeout_ms=int(session_ms), heartbeat_interval_ms=1000)
    await c.start()
    while not c.assignment():
        await c.getmany(timeout_ms=100)
    print("assigned", flush=True)
    while True:
        await c.getmany(timeout_ms=100)
asyncio.run(main(*sys.argv[1:]))
"""


async def _join(bootstrap: str, group: str) -> float:
    """Return seconds from a new member's start until it has an assignment."""
    from aiokafka import AIOKafkaConsumer

    started = time.monotonic()
    consumer = AIOKafkaConsumer(
        "joins", bootstrap_servers=bootstrap, group_id=group,
        session_timeout_ms=SESSION_MS, heartbeat_interval_ms=1000,
    )  # fmt: skip
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        return time.monotonic() - started
    finally:
        await consumer.stop()


def test_embedded_broker_makes_a_group_join_wait_about_half_the_session_timeout(
    broker: EmbeddedBroker,
) -> None:
    """A lone member's join takes ~3 s with a 6 s session (Apache Kafka: a fraction of it)."""
    create_topics(broker.bootstrap, [("joins", 3, {})])
    took = asyncio.run(_join(broker.bootstrap, "lone"))
    assert 0.3 * SESSION_MS / 1000 <= took < 2 * SESSION_MS / 1000, took


def test_embedded_broker_holds_the_next_join_until_a_killed_members_session_expires(
    broker: EmbeddedBroker,
) -> None:
    """After SIGKILL of the only member, a new one waits ~its session out, not half of it."""
    create_topics(broker.bootstrap, [("joins", 3, {})])
    member = subprocess.Popen(
        [sys.executable, "-c", MEMBER, broker.bootstrap, "killed", str(SESSION_MS)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert member.stdout is not None and member.stdout.readline().strip() == "assigned"
    finally:
        member.send_signal(signal.SIGKILL)
        member.wait()
    killed = time.monotonic()
    asyncio.run(_join(broker.bootstrap, "killed"))
    waited = time.monotonic() - killed
    assert 0.7 * SESSION_MS / 1000 <= waited < 5 * SESSION_MS / 1000, waited

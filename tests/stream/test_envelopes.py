"""Envelopes (many records per faust event) commit exactly what was processed."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline import topics
from pipeline.clients import read_topic
from pipeline.settings import Settings
from tests.conftest import PARTITIONS
from tests.stream.test_pipeline import send

pytestmark = pytest.mark.broker

SUBSCRIBERS = 1_500


def _committed(settings: Settings, topic: str) -> dict[int, int]:
    """The worker group's committed offsets (an offset fetch: this client joins no group)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.broker, group_id=settings.app_id, enable_auto_commit=False
    )
    try:
        found = {p: consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        consumer.close()
    return {p: offset for p, offset in found.items() if offset is not None}


def _ends(settings: Settings, topic: str) -> dict[int, int]:
    """The real end of each partition: the last offset read + 1 (the broker misreports it)."""
    ends: dict[int, int] = defaultdict(int)
    for _key, _value, partition, offset in read_topic(settings, topic, idle_timeout=1.0):
        ends[partition] = max(ends[partition], offset + 1)
    return dict(ends)


def test_acking_an_envelope_commits_every_record_in_it_and_none_beyond(
    settings: Settings, worker_factory: Any
) -> None:
    """After three bursts of signals, the group's commits sit exactly at each partition's end."""
    now = int(time.time() * 1000)
    worker = worker_factory()
    phones = [f"+62815{n:08d}" for n in range(SUBSCRIBERS)]
    for burst in range(3):  # several fetches, so several envelopes per partition
        send(settings, topics.USER_SIGNALS, [
            {"phone": p, "business_id": "megamart", "kind": "OPT_IN", "scope": "ALL",
             "text": None, "source": "app", "consent_version": "v1",
             "occurred_at": now - 50_000 + burst}
            for p in phones[burst::3]
        ])  # fmt: skip
    worker.wait_consumed({topics.USER_SIGNALS: SUBSCRIBERS})
    ends = _ends(settings, topics.USER_SIGNALS)
    assert sum(ends.values()) == SUBSCRIBERS
    deadline = time.monotonic() + 30  # faust commits every 2.8 s
    committed = _committed(settings, topics.USER_SIGNALS)
    while committed != ends and time.monotonic() < deadline:
        time.sleep(0.5)
        committed = _committed(settings, topics.USER_SIGNALS)
    assert committed == ends
    assert worker.progress().consumed[topics.USER_SIGNALS] == SUBSCRIBERS  # each once

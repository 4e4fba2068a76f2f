"""The worker's consumer uses Herald's fetch wait, not faust's hard-coded 1.5 s."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer

from pipeline.broker import EmbeddedBroker
from pipeline.policy import default_policy
from pipeline.settings import Settings
from pipeline.streams.app import build_app
from pipeline.streams.fetch_wait import set_fetch_wait
from pipeline.topics import create_topics

pytestmark = pytest.mark.broker


def test_faust_builds_its_worker_consumer_with_the_configured_wait() -> None:
    """faust's consumer factory hands back a consumer holding HERALD_FETCH_WAIT_MS."""

    async def build() -> int:
        settings = Settings.from_env({"HERALD_BROKER": "127.0.0.1:1", "HERALD_FETCH_WAIT_MS": "25"})
        app = build_app(settings, default_policy())
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()

    assert asyncio.run(build()) == 25


def test_the_wait_reaches_the_fetcher_of_a_started_consumer(broker: EmbeddedBroker) -> None:
    """aiokafka reads the wait when it starts: the fetcher of a real consumer carries it."""
    create_topics(broker.bootstrap, [("fetch-wait", 1, {})])

    async def start() -> int:
        consumer = set_fetch_wait(
            AIOKafkaConsumer("fetch-wait", bootstrap_servers=broker.bootstrap), 10
        )
        await consumer.start()
        try:
            return int(consumer._fetcher._fetch_max_wait_ms)
        finally:
            await consumer.stop()

    assert asyncio.run(start()) == 10

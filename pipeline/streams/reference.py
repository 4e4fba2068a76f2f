"""Reference data every worker reads whole: business profiles and link reputation.

These topics are keyed by business or domain, not by subscriber, so no partition of
the subscriber state owns them. Each worker reads both compacted topics from the
beginning with a group-less consumer and overlays them on the policy file: a
business suspended on any of the platform's apps is suspended here for every
decision made after the update is read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable
from types import MappingProxyType
from typing import Any

from pipeline import topics
from pipeline.codec import CodecError, SchemaRegistry
from pipeline.domain.models import BusinessProfile, BusinessStatus, Policy

log = logging.getLogger(__name__)


class ReferenceData:
    """The policy file's businesses and blocked domains, overlaid by the topics."""

    def __init__(self, base: Policy, codec: SchemaRegistry) -> None:
        self.base = base
        self.codec = codec
        self.profiles: dict[str, BusinessProfile] = {}
        self.verdicts: dict[str, bool] = {}  # domain -> blocked?
        self.policy = base
        self.caught_up = asyncio.Event()
        self.skipped = 0

    def apply(self, topic: str, value: bytes | None) -> None:
        """Apply one record of business-profiles or link-reputation (tombstones ignored)."""
        if value is None:
            return
        try:
            record = self.codec.decode(topics.RECORD_OF_TOPIC[topic], value)
        except CodecError as exc:
            # Reference topics are written by platform services, not businesses; an
            # unreadable record is logged and skipped rather than stopping every worker.
            self.skipped += 1
            log.warning("skipped unreadable %s record: %s", topic, type(exc).__name__)
            return
        if topic == topics.BUSINESS_PROFILES:
            self.profiles[record["business_id"]] = BusinessProfile(
                business_id=record["business_id"],
                tier=record["tier"],
                verified=record["verified"],
                status=BusinessStatus(record["status"]),
                updated_at=record["updated_at"],
            )
        else:
            self.verdicts[record["domain"]] = record["verdict"] == "BLOCKED"
        self._rebuild()

    def apply_all(self, records: Iterable[tuple[str, bytes | None]]) -> None:
        for topic, value in records:
            self.apply(topic, value)

    def _rebuild(self) -> None:
        blocked = set(self.base.blocked_domains)
        blocked |= {d for d, bad in self.verdicts.items() if bad}
        blocked -= {d for d, bad in self.verdicts.items() if not bad}
        self.policy = dataclasses.replace(
            self.base,
            businesses=MappingProxyType({**self.base.businesses, **self.profiles}),
            blocked_domains=frozenset(blocked),
        )

    async def follow(self, bootstrap: str, client_config: dict[str, Any]) -> None:
        """Read both topics from the beginning, forever; set `caught_up` once idle."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, **client_config
        )
        await consumer.start()
        try:
            partitions = [
                TopicPartition(t, p)
                for t in topics.REFERENCE_TOPICS
                for p in sorted(consumer.partitions_for_topic(t) or ())
            ]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=5_000)
                for tp, records in batches.items():
                    self.apply_all((tp.topic, r.value) for r in records)
                # The embedded broker misreports end offsets, so "caught up" means a
                # poll that found nothing new rather than a comparison with the end.
                if not batches and not self.caught_up.is_set():
                    log.info(
                        "reference data loaded: %d business profiles, %d link verdicts",
                        len(self.profiles), len(self.verdicts),
                    )  # fmt: skip
                    self.caught_up.set()
        finally:
            await consumer.stop()

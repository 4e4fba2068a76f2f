"""`herald explain`: why did (or didn't) this number get this event's message?

The caller gives the number; Herald computes its subscriber key and reads only the
partition of the output topics where that key's outcomes live. Nothing is printed for
any number the caller did not give.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pipeline import topics
from pipeline.clients import partition_count, read_topic
from pipeline.codec import default_registry
from pipeline.domain import KeyMaker
from pipeline.settings import Settings
from pipeline.streams.stages import partition_for


def _when(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def explain(settings: Settings, event_id: str, phone: str) -> list[dict[str, Any]]:
    """Return the decisions recorded for (event, number), oldest first."""
    codec = default_registry()
    subscriber = KeyMaker(settings.subscriber_secret.reveal()).key(phone).subscriber
    # Outcomes are keyed by subscriber: only one partition can hold this number's.
    partition = partition_for(subscriber, partition_count(settings, topics.DELIVERIES))
    found: list[dict[str, Any]] = []
    for topic in (topics.DELIVERIES, topics.SUPPRESSIONS):
        for key, value, _p, offset in read_topic(
            settings, topic, partitions=[partition], idle_timeout=1.0
        ):
            if key != subscriber.encode():
                continue
            record = codec.decode(topics.RECORD_OF_TOPIC[topic], value)
            if record["event_id"] != event_id:
                continue
            found.append(
                {
                    "outcome": "DELIVERED" if topic == topics.DELIVERIES else "SUPPRESSED",
                    "reason": record.get("reason"),
                    "rule": record["rule"],
                    "detail": record["detail"],
                    "category": record["category"],
                    "policy_version": record["policy_version"],
                    "decided_at": _when(record["decided_at"]),
                    "deliver_after": _when(record.get("deliver_after")),
                    "message_id": record["message_id"],
                    "business_id": record["business_id"],
                    "topic": f"{topic}/{partition}@{offset}",
                }
            )
    # At-least-once delivery and replayed events repeat the same decision: show it once.
    unique: dict[tuple[Any, ...], dict[str, Any]] = {}
    for d in found:
        same = (d["outcome"], d["reason"], d["rule"], d["detail"], d["decided_at"], d["message_id"])
        if same in unique:
            unique[same]["times_recorded"] += 1
        else:
            unique[same] = {**d, "times_recorded": 1}
    return sorted(unique.values(), key=lambda d: d["decided_at"] or "")

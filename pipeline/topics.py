"""Herald's topics (the contract in DESIGN.md) and how to create them."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from pipeline.errors import BrokerError

BUSINESS_EVENTS = "business-events"
ACCOUNT_LINKS = "account-links"
USER_SIGNALS = "user-signals"
BUSINESS_PROFILES = "business-profiles"
LINK_REPUTATION = "link-reputation"
DELIVERIES = "deliveries"
SUPPRESSIONS = "suppressions"
DEAD_LETTERS = "dead-letters"

INPUT_TOPICS = (BUSINESS_EVENTS, ACCOUNT_LINKS, USER_SIGNALS, BUSINESS_PROFILES, LINK_REPUTATION)
# Reference data every worker reads whole (not partitioned by subscriber).
REFERENCE_TOPICS = (BUSINESS_PROFILES, LINK_REPUTATION)
OUTPUT_TOPICS = (DELIVERIES, SUPPRESSIONS, DEAD_LETTERS)

# Avro record written on each public topic.
RECORD_OF_TOPIC = {
    BUSINESS_EVENTS: "herald.v1.BusinessEvent",
    ACCOUNT_LINKS: "herald.v1.AccountLink",
    USER_SIGNALS: "herald.v1.UserSignal",
    BUSINESS_PROFILES: "herald.v1.BusinessProfile",
    LINK_REPUTATION: "herald.v1.LinkReputation",
    DELIVERIES: "herald.v1.Delivery",
    SUPPRESSIONS: "herald.v1.Suppression",
    DEAD_LETTERS: "herald.v1.DeadLetter",
}

COMPACTED = {"cleanup.policy": "compact"}


def candidates_topic(app_id: str) -> str:
    """Name the internal repartition topic: candidates keyed like the subscriber state."""
    return f"{app_id}-candidates"


def replays_topic(app_id: str) -> str:
    """Name the internal, compacted record of replayed dead letters (key dead_letter_id)."""
    return f"{app_id}-replays"


def herald_topics(app_id: str, partitions: int) -> list[tuple[str, int, dict[str, str]]]:
    """List (name, partitions, config) for every topic Herald reads or writes."""
    specs: list[tuple[str, int, dict[str, str]]] = []
    for name in (*INPUT_TOPICS, *OUTPUT_TOPICS, candidates_topic(app_id), replays_topic(app_id)):
        compacted = name in (ACCOUNT_LINKS, *REFERENCE_TOPICS, replays_topic(app_id))
        specs.append((name, partitions, COMPACTED if compacted else {}))
    return specs


def create_topics(
    bootstrap: str,
    topics: Iterable[tuple[str, int, dict[str, str]]],
    replication_factor: int = 1,
    client_config: dict[str, Any] | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError

    wanted = list(topics)
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, **(client_config or {}))
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise BrokerError(f"cannot reach {bootstrap}: {type(exc).__name__}") from exc
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(name, parts, replication_factor, topic_configs=config)
            for name, parts, config in wanted
            if name not in existing
        ]
        if new:
            admin.create_topics(new)
        return [t.name for t in new]
    finally:
        admin.close()

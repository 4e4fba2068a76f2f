"""Updates about one entity (a flight, a parcel): never an older status, no cascades.

The memory of an entity holds what was last *delivered* about it. Comparing with the
highest version delivered (not merely seen) means a version suppressed for another
reason (no consent yet, pair rate) never blocks a later one the user may get; and a
version equal to the one delivered is the same message, which the duplicate rule
already suppresses, so only a strictly older version is SUPERSEDED.

Details never name the entity: a parcel or booking id can identify a person.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pipeline.domain.models import (
    BusinessEvent,
    EntityMemory,
    EventKind,
    Objection,
    Policy,
    Reason,
    SubscriberState,
)
from pipeline.domain.words import span

# Versions are non-negative (the schema's "monotonic version"); an entity first delivered
# without one is remembered as version 0.
_NOTHING_YET = EntityMemory(0, 0, None, None, None, False)


def entity_key(event: BusinessEvent) -> str | None:
    """Return the key of the event's entity in SubscriberState.entities, if it has one."""
    if event.entity_id is None:
        return None
    return f"{event.business_id}/{event.entity_id}"


def _minutes(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _gate(event: BusinessEvent) -> str | None:
    value = event.payload.get("new_gate", event.payload.get("gate"))
    return value if isinstance(value, str) and value else None


def superseded_verdict(event: BusinessEvent, state: SubscriberState) -> Objection | None:
    """Return SUPERSEDED if a newer version of the event's entity was already delivered."""
    key = entity_key(event)
    if key is None or event.entity_version is None:
        return None
    memory = state.entities.get(key)
    if memory is None or memory.version <= event.entity_version:
        return None
    return (
        Reason.SUPERSEDED,
        f"version {event.entity_version} of this update is older than version "
        f"{memory.version}, already delivered",
    )


def coalesce_verdict(
    event: BusinessEvent, state: SubscriberState, policy: Policy, now: int
) -> Objection | None:
    """Return COALESCED for a flight delay update too soon after the last delivered one.

    It passes if the delay moved by at least the policy's minutes against the last
    delivered delay (or none was delivered), or the gate changed. Cancellations and gate
    changes are not delay updates and always pass.
    """
    if event.kind != EventKind.FLIGHT_DELAY:
        return None
    key = entity_key(event)
    memory = state.entities.get(key) if key is not None else None
    if memory is None or memory.delivered_at is None:
        return None
    rules = policy.coalescing
    since = now - memory.delivered_at
    # A delivery still held (marketing about the flight, sent in the morning) has not
    # told the user anything yet.
    if not 0 <= since < rules.flight_delay_interval_ms:
        return None
    delay = _minutes(event.payload.get("delay_minutes"))
    if delay is not None:
        if memory.delay_minutes is None:
            return None
        if abs(delay - memory.delay_minutes) >= rules.flight_delay_min_change_minutes:
            return None
    gate = _gate(event)
    if gate is not None and memory.gate is not None and gate != memory.gate:
        return None
    moved = (
        f"delay {memory.delay_minutes} -> {delay} min"
        if delay is not None and memory.delay_minutes is not None
        else "delay unchanged"
    )
    return (
        Reason.COALESCED,
        f"flight delay update {span(since)} after the last one delivered ({moved}, same gate): "
        f"at most one per {span(rules.flight_delay_interval_ms)} unless the delay moves "
        f">= {rules.flight_delay_min_change_minutes} min, the gate changes or the flight "
        "is cancelled",
    )


def record_entity(
    entities: Mapping[str, EntityMemory],
    event: BusinessEvent | None,
    sent_at: int,
    policy: Policy,
    now: int,
) -> Mapping[str, EntityMemory]:
    """Return the memories after delivering `event` (None: only prune), pruned by age."""
    floor = now - policy.entity_memory_ms
    key = entity_key(event) if event is not None else None
    stale = bool(entities) and any(m.seen_at <= floor for m in entities.values())
    if key is None and not stale:
        return entities
    kept = {k: m for k, m in entities.items() if m.seen_at > floor} if stale else dict(entities)
    if event is not None and key is not None:
        old = kept.get(key, _NOTHING_YET)
        delay = _minutes(event.payload.get("delay_minutes"))
        version = event.entity_version
        # What this delivery did not say (a gate change has no delay) stays as last said.
        kept[key] = EntityMemory(
            version=old.version if version is None else max(old.version, version),
            seen_at=now,
            delivered_at=sent_at,
            delay_minutes=old.delay_minutes if delay is None else delay,
            gate=_gate(event) or old.gate,
            cancelled=old.cancelled or event.kind == EventKind.FLIGHT_CANCELLATION,
        )
    return MappingProxyType(kept)

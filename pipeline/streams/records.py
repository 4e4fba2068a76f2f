"""Translate between wire records (decoded Avro dicts) and domain values.

The codec speaks dicts, the core speaks frozen dataclasses; this module is the only
place that knows both shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pipeline.domain.models import (
    AccountLink,
    AccountStatus,
    BusinessEvent,
    Candidate,
    Category,
    Deliver,
    EventKind,
    Offer,
    Recipient,
    Scope,
    SignalKind,
    Suppress,
    Template,
    UserSignal,
)

PAYLOAD_TYPE = "__type__"  # where the union branch's record name travels inside `payload`


def event_from_wire(d: Mapping[str, Any]) -> BusinessEvent:
    """Build a BusinessEvent from its decoded Avro record."""
    template = d["template"]
    offer = d.get("offer")
    payload = d.get("payload")
    payload_map: dict[str, object] = {}
    if payload is not None:
        name, fields = payload
        payload_map = {**fields, PAYLOAD_TYPE: name}
    return BusinessEvent(
        event_id=d["event_id"],
        business_id=d["business_id"],
        kind=EventKind(d["kind"]),
        occurred_at=d["occurred_at"],
        expires_at=d.get("expires_at"),
        recipients=tuple(d.get("recipients") or ()),
        entity_id=d.get("entity_id"),
        entity_version=d.get("entity_version"),
        template=Template(template["name"], template["language"], tuple(template["params"])),
        tags=tuple(d.get("tags") or ()),
        offer=Offer(**offer) if offer else None,
        payload=MappingProxyType(payload_map),
    )


def event_to_wire(e: BusinessEvent, with_recipients: bool = True) -> dict[str, Any]:
    """Build the Avro record of a BusinessEvent (recipients dropped for internal topics)."""
    payload = None
    if e.payload:
        fields = {k: v for k, v in e.payload.items() if k != PAYLOAD_TYPE}
        payload = (e.payload[PAYLOAD_TYPE], fields)
    offer = e.offer
    return {
        "event_id": e.event_id,
        "business_id": e.business_id,
        "kind": e.kind.value,
        "occurred_at": e.occurred_at,
        "expires_at": e.expires_at,
        "recipients": list(e.recipients) if with_recipients else [],
        "entity_id": e.entity_id,
        "entity_version": e.entity_version,
        "template": template_to_wire(e.template),
        "tags": list(e.tags),
        "offer": None
        if offer is None
        else {
            "description": offer.description,
            "code": offer.code,
            "discount_percent": offer.discount_percent,
            "valid_until": offer.valid_until,
        },
        "payload": payload,
    }


def template_to_wire(t: Template) -> dict[str, Any]:
    return {"name": t.name, "language": t.language, "params": list(t.params)}


def account_link_from_wire(d: Mapping[str, Any]) -> AccountLink:
    """Build an AccountLink from its decoded Avro record."""
    return AccountLink(
        subscriber=d["subscriber"],
        wa_id=d["wa_id"],
        status=AccountStatus(d["status"]),
        locale=d["locale"],
        country=d["country"],
        updated_at=d["updated_at"],
        timezone=d.get("timezone"),
        interests=tuple(d.get("interests") or ()),
        linked_accounts=MappingProxyType(dict(d.get("linked_accounts") or {})),
    )


def signal_from_wire(d: Mapping[str, Any]) -> UserSignal:
    """Build a UserSignal from its decoded Avro record."""
    return UserSignal(
        subscriber=d["subscriber"],
        kind=SignalKind(d["kind"]),
        occurred_at=d["occurred_at"],
        business_id=d.get("business_id"),
        scope=Scope(d.get("scope") or "ALL"),
        text=d.get("text"),
        source=d.get("source") or "unknown",
        consent_version=d.get("consent_version"),
    )


def candidates_from_wire(d: Mapping[str, Any]) -> list[Candidate]:
    """Unpack a CandidateBatch record into one Candidate per recipient."""
    return candidates_of(event_from_wire(d["event"]), d)


def candidates_of(event: BusinessEvent, d: Mapping[str, Any]) -> list[Candidate]:
    """Unpack a CandidateBatch's candidates, its event already built."""
    category = Category(d["category"])
    return [
        Candidate(
            event,
            category,
            Recipient(c["recipient_index"], c["subscriber"], c["region"], tuple(c["zones"])),
            limited=c["limited"],
        )
        for c in d["candidates"]
    ]


def candidate_batch_rest_to_wire(
    category: Category,
    recipients: list[Recipient],
    source: tuple[str, int, int],
    limited: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """A CandidateBatch but for its event (written apart, once for all partitions)."""
    topic, partition, offset = source
    return {
        "category": category.value,
        "candidates": [
            {
                "subscriber": r.subscriber,
                "recipient_index": r.index,
                "region": r.region,
                "zones": list(r.zones),
                "limited": r.subscriber in limited,
            }
            for r in recipients
        ],
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
    }


def delivery_to_wire(c: Candidate, d: Deliver, wa_id: str) -> dict[str, Any]:
    """Build the Delivery record for a candidate the policy let through."""
    e = c.event
    return {
        "message_id": d.message_id,
        "event_id": e.event_id,
        "business_id": e.business_id,
        "subscriber": c.recipient.subscriber,
        "wa_id": wa_id,
        "recipient_index": c.recipient.index,
        "kind": e.kind.value,
        "category": c.category.value,
        "template": template_to_wire(e.template),
        "entity_id": e.entity_id,
        "priority": d.priority.value,
        "deliver_after": d.deliver_after,
        "expires_at": e.expires_at,
        "decided_at": d.decided_at,
        "policy_version": d.policy_version,
        "rule": d.rule,
        "detail": d.detail,
    }


def suppression_to_wire(
    event: BusinessEvent,
    category: Category,
    subscriber: str,
    recipient_index: int,
    s: Suppress,
) -> dict[str, Any]:
    """Build the Suppression record for a recipient who is not messaged."""
    return {
        "message_id": s.message_id,
        "event_id": event.event_id,
        "business_id": event.business_id,
        "subscriber": subscriber,
        "recipient_index": recipient_index,
        "category": category.value,
        "reason": s.reason.value,
        "rule": s.rule,
        "detail": s.detail,
        "decided_at": s.decided_at,
        "policy_version": s.policy_version,
    }


def account_link_to_wire(a: AccountLink) -> dict[str, Any]:
    return {
        "subscriber": a.subscriber,
        "wa_id": a.wa_id,
        "status": a.status.value,
        "locale": a.locale,
        "timezone": a.timezone,
        "country": a.country,
        "interests": list(a.interests),
        "linked_accounts": dict(a.linked_accounts),
        "updated_at": a.updated_at,
    }


def signal_to_wire(s: UserSignal) -> dict[str, Any]:
    return {
        "subscriber": s.subscriber,
        "business_id": s.business_id,
        "kind": s.kind.value,
        "scope": s.scope.value,
        "text": s.text,
        "source": s.source,
        "consent_version": s.consent_version,
        "occurred_at": s.occurred_at,
    }

"""Serialise the per-subscriber state for the faust table and its changelog.

JSON, compact and versioned by a leading field: the state is internal (never on a
public topic), small, and must survive upgrades, so readability beats a schema here.

Format 2 adds the policy ledgers (marketing sends, last send per business, inbound
messages, "not interested", entity memories) and Consent.reported; each ledger is
written only when non-empty. Format 1 documents are still read: they lack exactly
those fields, which decode to their empty defaults.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import orjson

from pipeline.domain.models import (
    Account,
    AccountStatus,
    Consent,
    EntityMemory,
    MarketingSent,
    PastOutcome,
    Priority,
    Reason,
    SubscriberState,
)

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)

# Every decision decodes and encodes a subscriber's state: orjson and these lookups
# (an Enum call costs ~1 us) keep that cheap. The bytes are plain compact JSON.
_REASONS = {r.value: r for r in Reason}
_PRIORITIES = {p.value: p for p in Priority}
_STATUSES = {s.value: s for s in AccountStatus}


def encode_state(s: SubscriberState) -> bytes:
    """Serialise a subscriber's state."""
    a = s.account
    doc: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "account": None
        if a is None
        else [a.wa_id, a.status.value, a.locale, a.country, a.updated_at, a.timezone,
              list(a.interests)],
        "consents": {
            b: [c.utility, c.marketing, c.blocked, c.updated_at, c.reported]
            for b, c in s.consents.items()
        },
        "outcomes": {
            e: [o.delivered, o.rule, o.detail, o.decided_at, o.policy_version,
                o.reason.value if o.reason else None, o.deliver_after,
                o.priority.value if o.priority else None]
            for e, o in s.outcomes.items()
        },
        "sent": {f: list(v) for f, v in s.sent.items()},
    }  # fmt: skip
    if s.marketing:
        doc["marketing"] = [
            [m.at, m.business_id, m.message_id, m.counted, m.read] for m in s.marketing
        ]
    if s.last_sent:
        doc["last_sent"] = dict(s.last_sent)
    if s.inbound_at:
        doc["inbound_at"] = dict(s.inbound_at)
    if s.not_interested_at is not None:
        doc["not_interested_at"] = s.not_interested_at
    if s.entities:
        doc["entities"] = {
            k: [m.version, m.seen_at, m.delivered_at, m.delay_minutes, m.gate, m.cancelled]
            for k, m in s.entities.items()
        }
    return orjson.dumps(doc)


def decode_state(data: bytes) -> SubscriberState:
    """Deserialise a subscriber's state written by encode_state (format 1 or 2)."""
    doc = orjson.loads(data)
    version = doc.get("v")
    # `type(...) is int` also refuses True, which equals 1 but is no format version.
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise ValueError(f"unknown subscriber state format {version!r}")
    a = doc["account"]
    return SubscriberState(
        account=None
        if a is None
        else Account(
            wa_id=a[0], status=_STATUSES[a[1]], locale=a[2], country=a[3],
            updated_at=a[4], timezone=a[5], interests=tuple(a[6]),
        ),
        consents=MappingProxyType(
            # Format 1 consents have no `reported` flag (c[4]).
            {b: Consent(c[0], c[1], c[2], c[3], len(c) > 4 and c[4])
             for b, c in doc["consents"].items()}
        ),
        outcomes=MappingProxyType(
            {
                e: PastOutcome(
                    delivered=o[0], rule=o[1], detail=o[2], decided_at=o[3],
                    policy_version=o[4], reason=_REASONS[o[5]] if o[5] else None,
                    deliver_after=o[6], priority=_PRIORITIES[o[7]] if o[7] else None,
                )
                for e, o in doc["outcomes"].items()
            }
        ),
        sent=MappingProxyType({f: (v[0], v[1]) for f, v in doc["sent"].items()}),
        marketing=tuple(
            MarketingSent(at=m[0], business_id=m[1], message_id=m[2], counted=m[3], read=m[4])
            for m in doc.get("marketing", ())
        ),
        last_sent=MappingProxyType(dict(doc.get("last_sent", {}))),
        inbound_at=MappingProxyType(dict(doc.get("inbound_at", {}))),
        not_interested_at=doc.get("not_interested_at"),
        entities=MappingProxyType(
            {
                k: EntityMemory(
                    version=m[0], seen_at=m[1], delivered_at=m[2], delay_minutes=m[3],
                    gate=m[4], cancelled=m[5],
                )
                for k, m in doc.get("entities", {}).items()
            }
        ),
    )  # fmt: skip

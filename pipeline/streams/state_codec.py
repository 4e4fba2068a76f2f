"""Serialise the per-subscriber state for the faust table and its changelog.

JSON, compact and versioned by a leading field: the state is internal (never on a
public topic), small, and must survive upgrades, so readability beats a schema here.
"""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

from pipeline.domain.models import (
    Account,
    AccountStatus,
    Consent,
    PastOutcome,
    Priority,
    Reason,
    SubscriberState,
)

FORMAT_VERSION = 1


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
            b: [c.utility, c.marketing, c.blocked, c.updated_at] for b, c in s.consents.items()
        },
        "outcomes": {
            e: [o.delivered, o.rule, o.detail, o.decided_at, o.policy_version,
                o.reason.value if o.reason else None, o.deliver_after,
                o.priority.value if o.priority else None]
            for e, o in s.outcomes.items()
        },
        "sent": {f: list(v) for f, v in s.sent.items()},
    }  # fmt: skip
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_state(data: bytes) -> SubscriberState:
    """Deserialise a subscriber's state written by encode_state."""
    doc = json.loads(data)
    if doc.get("v") != FORMAT_VERSION:
        raise ValueError(f"unknown subscriber state format {doc.get('v')!r}")
    a = doc["account"]
    return SubscriberState(
        account=None
        if a is None
        else Account(
            wa_id=a[0], status=AccountStatus(a[1]), locale=a[2], country=a[3],
            updated_at=a[4], timezone=a[5], interests=tuple(a[6]),
        ),
        consents=MappingProxyType(
            {b: Consent(c[0], c[1], c[2], c[3]) for b, c in doc["consents"].items()}
        ),
        outcomes=MappingProxyType(
            {
                e: PastOutcome(
                    delivered=o[0], rule=o[1], detail=o[2], decided_at=o[3],
                    policy_version=o[4], reason=Reason(o[5]) if o[5] else None,
                    deliver_after=o[6], priority=Priority(o[7]) if o[7] else None,
                )
                for e, o in doc["outcomes"].items()
            }
        ),
        sent=MappingProxyType({f: (v[0], v[1]) for f, v in doc["sent"].items()}),
    )  # fmt: skip

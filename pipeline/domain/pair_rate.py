"""Pair rate: at most one message per interval from one business to one user.

Messages sent at once set `SubscriberState.last_sent`; marketing held for quiet hours
goes out later, at its `MarketingSent.at`, so the ledger is checked as well. A message
is too close if any send from the same business lies within the interval of its own
send time, before or after it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from types import MappingProxyType

from pipeline.domain.models import (
    DAY_MS,
    MarketingSent,
    Objection,
    Policy,
    Reason,
    SubscriberState,
)
from pipeline.domain.words import span

# last_sent is kept this long: far beyond any pair interval, short enough to stay small.
LAST_SENT_MEMORY_MS = DAY_MS


def _send_time(m: MarketingSent) -> int:
    return m.at


def pair_rate_verdict(
    state: SubscriberState, business_id: str, t: int, policy: Policy
) -> Objection | None:
    """Return PAIR_RATE if this business sends the user something within the interval of t."""
    interval = policy.pair_interval_ms
    closest: int | None = None
    last = state.last_sent.get(business_id)
    if last is not None and abs(t - last) < interval:
        closest = last
    ledger = state.marketing
    # The ledger is sorted by send time: only the sends within the interval are looked at.
    start = bisect_right(ledger, t - interval, key=_send_time)
    for m in ledger[start:]:
        gap = abs(t - m.at)
        if gap >= interval:
            break
        if m.business_id == business_id:
            closest = m.at if closest is None or gap < abs(t - closest) else closest
    if closest is None:
        return None
    gap = abs(t - closest)
    return (
        Reason.PAIR_RATE,
        f"another message from this business {span(gap)} "
        f"{'before' if closest <= t else 'after'} this one "
        f"(at most 1 per {span(interval)})",
    )


def record_send(
    last_sent: Mapping[str, int], business_id: str | None, at: int, now: int
) -> Mapping[str, int]:
    """Return last_sent after a message sent at once at `at` (None: only prune)."""
    floor = now - LAST_SENT_MEMORY_MS
    stale = bool(last_sent) and min(last_sent.values()) <= floor  # min() loops in C
    if business_id is None and not stale:
        return last_sent
    kept = {b: t for b, t in last_sent.items() if t > floor} if stale else dict(last_sent)
    if business_id is not None:
        kept[business_id] = max(kept.get(business_id, at), at)
    return MappingProxyType(kept)

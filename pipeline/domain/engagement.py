"""Engagement: what the user did with marketing (read it, said "not interested", wrote back).

Signals can arrive out of order, so every time kept here is the signal's own
`occurred_at`, and a late signal never moves a time backwards.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from pipeline.domain.models import MarketingSent, Policy, SubscriberState


def record_inbound(
    state: SubscriberState, business_id: str, at: int, policy: Policy
) -> SubscriberState:
    """Return the state remembering that the user wrote to a business at `at`.

    Entries older than the service window (relative to this message) are dropped, so
    a user who writes to many businesses keeps a bounded map.
    """
    previous = state.inbound_at.get(business_id)
    if previous is not None and previous >= at:
        return state
    floor = at - policy.marketing.service_window_ms
    inbound = {b: t for b, t in state.inbound_at.items() if t > floor}
    inbound[business_id] = at
    return replace(state, inbound_at=MappingProxyType(inbound))


def in_service_window(state: SubscriberState, business_id: str, policy: Policy, now: int) -> bool:
    """Return True if the user wrote to the business less than the service window ago."""
    at = state.inbound_at.get(business_id)
    return at is not None and now - at < policy.marketing.service_window_ms


def mark_read(state: SubscriberState, business_id: str | None, at: int) -> SubscriberState:
    """Return the state with the marketing sent by `at` marked read (one business or all)."""
    changed = False
    entries: list[MarketingSent] = []
    for m in state.marketing:
        if not m.read and m.at <= at and (business_id is None or m.business_id == business_id):
            m = replace(m, read=True)
            changed = True
        entries.append(m)
    return replace(state, marketing=tuple(entries)) if changed else state


def record_not_interested(state: SubscriberState, at: int) -> SubscriberState:
    """Return the state remembering the user said "not interested" at `at` (latest wins)."""
    if state.not_interested_at is not None and state.not_interested_at >= at:
        return state
    return replace(state, not_interested_at=at)


def unengaged_basis(state: SubscriberState, policy: Policy, now: int) -> str | None:
    """Return why the user counts as unengaged with marketing, or None if they do not.

    Unengaged: said NOT_INTERESTED within not_interested_ms, or read none of the last
    `unengaged_after` marketing messages already sent (held ones cannot be read yet), and
    only once there are that many: a new user is not unengaged for lack of history.
    """
    caps = policy.marketing
    said = state.not_interested_at
    if said is not None and now - said < caps.not_interested_ms:
        return "user said not interested"
    last = caps.unengaged_after
    if last <= 0 or len(state.marketing) < last:
        return None
    unread = 0
    for m in reversed(state.marketing):  # newest first; the ledger is sorted by send time
        if m.at > now:
            continue
        if m.read:
            return None
        unread += 1
        if unread == last:
            return f"user read none of the last {last} marketing messages"
    return None

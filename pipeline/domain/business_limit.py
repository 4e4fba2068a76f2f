"""Business messaging limits: unique users a business reaches per rolling window, by tier.

Enforced at ingest, where events are keyed (and partitioned) by business: the shell
keeps one BusinessWindow per business and calls `admit` with each event's recipients.
A user counts from the first message in a window until the window has passed (the
24-hour conversation of the messaging platform): more messages to the same user in
that time are free, and once it has passed the user counts anew.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType

from pipeline.domain.keys import message_id
from pipeline.domain.models import (
    HOUR_MS,
    BusinessEvent,
    BusinessProfile,
    Policy,
    Reason,
    Recipient,
    Suppress,
)
from pipeline.domain.words import span

RULE_BUSINESS_LIMIT = "business_limit"

_EMPTY: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class BusinessWindow:
    """Users one business reached in the rolling window: subscriber -> first time reached."""

    # In insertion order, which is time order: pruning stops at the first live entry.
    reached: Mapping[str, int] = field(default_factory=lambda: _EMPTY)


def _copy(mapping: Mapping[str, int]) -> dict[str, int]:
    # One C-level copy rather than key by key: windows of big tiers hold 100k users.
    if isinstance(mapping, dict | MappingProxyType):
        return mapping.copy()
    return dict(mapping)


def tier_limit(business: BusinessProfile | None, policy: Policy) -> tuple[str, int | None]:
    """Return (tier, unique users allowed per window; None = unlimited) for a business.

    A business without a profile has the default tier; a tier the policy does not know
    gets the default tier's limit, so a typo never lifts a limit.
    """
    tier = business.tier if business is not None else policy.default_tier
    if tier in policy.tier_limits:
        return tier, policy.tier_limits[tier]
    return tier, policy.tier_limits.get(policy.default_tier)


def admit(
    window: BusinessWindow,
    business: BusinessProfile | None,
    subscribers: Sequence[str],
    policy: Policy,
    now: int,
) -> tuple[frozenset[str], frozenset[str], BusinessWindow]:
    """Return (admitted, limited, the new window) for an event's recipients, in order.

    A subscriber already in the window is admitted free; a new one while the window
    holds fewer users than the tier allows. Unlimited tiers track nothing.
    """
    _, limit = tier_limit(business, policy)
    if limit is None:
        return frozenset(subscribers), frozenset(), BusinessWindow()
    floor = now - policy.business_window_ms
    reached = window.reached
    live: dict[str, int] | None = None
    # Entries are added in time order, so the first is the oldest: a window with nothing
    # expired costs no scan (a clock step back only delays pruning).
    oldest = next(iter(reached.values()), None)
    if oldest is not None and oldest <= floor:
        live = {s: t for s, t in reached.items() if t > floor}
        reached = live
    admitted: list[str] = []
    limited: list[str] = []
    for s in subscribers:
        if s in reached:
            admitted.append(s)
        elif len(reached) < limit:
            if live is None:
                live = _copy(reached)
                reached = live
            live[s] = now
            admitted.append(s)
        else:
            limited.append(s)
    new_window = window if live is None else BusinessWindow(MappingProxyType(live))
    return frozenset(admitted), frozenset(limited), new_window


def limit_detail(business: BusinessProfile | None, policy: Policy) -> str:
    """Return why a recipient was limited: the tier, its limit and the window."""
    tier, limit = tier_limit(business, policy)
    return _limit_words(tier, limit, policy.business_window_ms)


@lru_cache(maxsize=256)
def _limit_words(tier: str, limit: int | None, window: int) -> str:
    # Cached: a campaign over the limit says this to every recipient past it.
    per = f"{window // HOUR_MS} h" if window % HOUR_MS == 0 else span(window)
    return f"business tier {tier} reached its limit of {limit} unique users per {per}"


def suppress_limited(
    event: BusinessEvent, recipient: Recipient, business: BusinessProfile | None,
    policy: Policy, now: int,
) -> Suppress:  # fmt: skip
    """Return the BUSINESS_LIMIT suppression of a recipient `admit` did not admit."""
    return Suppress(
        message_id(event.event_id, recipient.subscriber),
        Reason.BUSINESS_LIMIT,
        RULE_BUSINESS_LIMIT,
        limit_detail(business, policy),
        now,
        policy.version,
    )

"""Marketing caps per user, over rolling windows of send times (never calendar days).

A window of width W ending at x holds the sends in (x - W, x]: a send exactly W before
is outside it, so 23:00 and 00:01 are two within 24 h, and 23:00 the next day frees
the slot. A message may be held for quiet hours, so some sends lie in the future; a
new send at t is allowed only if no window containing t would exceed its cap, which
means checking the windows that end at t and at every later send within W of t.

Only counted sends (outside a customer-service window the user opened) count.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Sequence

from pipeline.domain.engagement import unengaged_basis
from pipeline.domain.models import (
    DAY_MS,
    WEEK_MS,
    MarketingSent,
    Objection,
    Policy,
    Reason,
    SubscriberState,
)
from pipeline.domain.words import span, utc

_NUMBERS = ("no", "one", "two", "three", "four", "five", "six")


def window_peak(times: Sequence[int], t: int, width: int) -> Sequence[int]:
    """Return the sends of the fullest window of `width` that contains t (times sorted)."""
    low = bisect_right(times, t - width)
    high = bisect_right(times, t)
    best = times[low:high]
    # Later sends (held for quiet hours) close windows that also contain t.
    for end in range(high, len(times)):
        x = times[end]
        if x >= t + width:
            break
        inside = times[bisect_right(times, x - width) : end + 1]
        if len(inside) > len(best):
            best = inside
    return best


def _listing(times: Sequence[int], with_date: bool = False) -> str:
    """Return "last two at 09:12 and 14:40 UTC" (or "6 sent from ... to ... UTC")."""
    count = len(times)
    if count > 3:
        first, last = utc(times[0], with_date), utc(times[-1], with_date)
        return f"{count} sent from {first} to {last} UTC"
    shown = [utc(x, with_date) for x in times]
    spoken = shown[0] if count == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
    return f"last {_NUMBERS[count]} at {spoken} UTC"


def cap_verdict(
    state: SubscriberState, business_id: str, t: int, policy: Policy, now: int
) -> Objection | None:
    """Return BUSINESS_USER_CAP or USER_CAP if a counted send at t would break a cap."""
    return judge_caps(state, business_id, t, policy, now)[0]


def cap_summary(state: SubscriberState, business_id: str, t: int, policy: Policy, now: int) -> str:
    """Return the caps a counted send at t uses ("marketing 1 of 2 per 24 h, 3 of 6 per 7 d")."""
    return judge_caps(state, business_id, t, policy, now)[1]


def judge_caps(
    state: SubscriberState, business_id: str, t: int, policy: Policy, now: int
) -> tuple[Objection | None, str]:
    """Return (the cap a counted send at t would break, or None; the caps it uses, in words).

    One pass over the ledger serves both, since decide needs the words when it delivers.
    """
    caps = policy.marketing
    own: list[int] = []
    every: list[int] = []
    # The ledger is sorted by send time, so these lists are too.
    for m in state.marketing:
        if m.counted:
            every.append(m.at)
            if m.business_id == business_id:
                own.append(m.at)
    peak = window_peak(own, t, DAY_MS)
    if len(peak) >= caps.per_business_24h:
        return (
            Reason.BUSINESS_USER_CAP,
            f"marketing cap {caps.per_business_24h} per 24 h from this business reached: "
            f"{_listing(peak)}",
        ), ""
    near = [x for x in own if abs(t - x) < caps.min_gap_ms]
    if near:
        return (
            Reason.BUSINESS_USER_CAP,
            f"marketing from this business at {utc(near[-1])} UTC, "
            f"less than {span(caps.min_gap_ms)} apart",
        ), ""
    day = window_peak(every, t, DAY_MS)
    if len(day) >= caps.per_user_24h:
        return (
            Reason.USER_CAP,
            f"marketing cap {caps.per_user_24h} per 24 h reached: {_listing(day)}",
        ), ""
    week = window_peak(every, t, WEEK_MS)
    if len(week) >= caps.per_user_7d:
        return (
            Reason.USER_CAP,
            f"marketing cap {caps.per_user_7d} per 7 d reached: {_listing(week, True)}",
        ), ""
    summary = (
        f"marketing {len(day) + 1} of {caps.per_user_24h} per 24 h, "
        f"{len(week) + 1} of {caps.per_user_7d} per 7 d"
    )
    basis = unengaged_basis(state, policy, now)
    if basis is not None:
        if len(week) >= caps.unengaged_per_7d:
            return (
                Reason.USER_CAP,
                f"{basis}, so marketing cap {caps.unengaged_per_7d} per 7 d reached: "
                f"{_listing(week, True)}",
            ), ""
        summary += f" ({basis}: {len(week) + 1} of {caps.unengaged_per_7d} per 7 d)"
    return None, summary


def record_marketing(
    ledger: tuple[MarketingSent, ...], sent: MarketingSent | None, policy: Policy, now: int
) -> tuple[MarketingSent, ...]:
    """Return the ledger with `sent` added in send-time order, pruned to what rules need.

    Kept: the sends of the last 7 days (every cap window), and at least the last
    `unengaged_after` sends whatever their age (engagement looks that far back).
    """
    entries = list(ledger)
    if sent is not None:
        if entries and entries[-1].at > sent.at:
            insort(entries, sent, key=lambda m: m.at)
        else:
            entries.append(sent)
    floor = now - WEEK_MS
    if entries and entries[0].at <= floor:
        recent = next((i for i, m in enumerate(entries) if m.at > floor), len(entries))
        # Never more than there are: a negative start would keep only the newest few.
        keep = min(len(entries), max(len(entries) - recent, policy.marketing.unengaged_after))
        entries = entries[len(entries) - keep :]
    if sent is None and len(entries) == len(ledger):
        return ledger
    return tuple(entries)

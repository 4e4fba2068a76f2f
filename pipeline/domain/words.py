"""Durations and instants in the words decision details use."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

from pipeline.domain.models import DAY_MS, HOUR_MS, MINUTE_MS


def span(ms: int) -> str:
    """Return a duration in words for details ("45 s", "12 min", "3 h", "2 d")."""
    if ms >= DAY_MS:
        return f"{ms // DAY_MS} d"
    if ms >= HOUR_MS:
        return f"{ms // HOUR_MS} h"
    if ms >= MINUTE_MS:
        return f"{ms // MINUTE_MS} min"
    return f"{max(ms, 0) // 1000} s"


def utc(ms: int, with_date: bool = False) -> str:
    """Return an instant as "14:40" (or "Nov 13 14:40") in UTC, for details."""
    return _utc_minute(ms // MINUTE_MS, with_date)


@lru_cache(maxsize=4096)
def _utc_minute(minute: int, with_date: bool) -> str:
    # Cached: cap details name the same few send times for everyone a campaign reaches.
    moment = datetime.fromtimestamp(minute * 60, UTC)
    return f"{moment:%b %d %H:%M}" if with_date else f"{moment:%H:%M}"

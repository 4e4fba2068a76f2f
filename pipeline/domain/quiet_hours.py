"""Quiet hours: no marketing at night in the user's local time; it waits for the morning.

Where the local time comes from, first that is known:
  1. the account's time zone (linked-account data, so details never name it);
  2. the number's own zones (Recipient.zones, phonenumbers' prefix data): a number
     whose prefix spans several zones (a Russian or Australian mobile) may get marketing
     only when it is daytime in all of them;
  3. the zones phonenumbers gives the example numbers of the number's region (older
     candidates carry no zones; some prefixes have none);
  4. none of these: the local time is unknown and no hold applies.
Should the zones never agree on daytime (only phonenumbers' catch-all for +1, from
Hawaii to Guam, does), the next source is tried, and in the end the first zone alone.

Every boundary is an instant computed with zoneinfo from a local date and time, so a
hold ends at 09:00 local on either side of a daylight-saving change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers.timezone import time_zones_for_number

from pipeline.domain.models import (
    DAY_MS,
    MINUTE_MS,
    Account,
    BusinessEvent,
    Objection,
    QuietHours,
    Reason,
    Recipient,
)

_UNKNOWN_ZONE = "Etc/Unknown"
_SEARCH_MS = 3 * DAY_MS  # zones that agree on no daytime within this never will


@dataclass(frozen=True, slots=True)
class Hold:
    """A message held for quiet hours: when it may go, and why, in words."""

    until: int  # epoch ms: the end of quiet hours in every zone considered
    zone: str  # the zone whose morning decided `until`
    detail: str  # "held until 09:00 Asia/Jakarta (quiet hours 20:00-09:00)"


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo | None:
    """Return the zone of an IANA name, or None if the name is unknown or malformed."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@lru_cache(maxsize=512)
def region_zones(region: str) -> tuple[str, ...]:
    """Return the zones phonenumbers gives the example numbers of a region; () if none."""
    found: set[str] = set()
    for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE):
        example = phonenumbers.example_number_for_type(region, kind)
        if example is not None:
            found.update(z for z in time_zones_for_number(example) if z != _UNKNOWN_ZONE)
    return tuple(sorted(found))


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _boundary(day: date, minute: int, tz: ZoneInfo) -> int:
    local = datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=tz)
    return int(local.timestamp()) * 1000


Period = tuple[int, int, bool]  # (from, to, quiet): [from, to) is quiet or daytime

# (zone, start, end) -> the last two periods computed: consecutive decisions fall in
# the same period (and a held one also looks at the next), so the datetime arithmetic
# (~5 µs) runs a few times a day per zone rather than on every decision.
_periods: dict[tuple[str, int, int], tuple[Period, Period | None]] = {}


def period(tz: ZoneInfo, hours: QuietHours, t: int) -> Period:
    """Return (from, to, quiet) of the quiet or daytime period containing instant t."""
    key = (tz.key, hours.start_minute, hours.end_minute)
    memo = _periods.get(key)
    if memo is not None:
        last, before = memo
        if last[0] <= t < last[1]:
            return last
        if before is not None and before[0] <= t < before[1]:
            return before
    found = _period(tz, hours.start_minute, hours.end_minute, t)
    _periods[key] = (found, memo[0] if memo is not None else None)
    return found


def _period(tz: ZoneInfo, start: int, end: int, t: int) -> Period:
    today = datetime.fromtimestamp(t / 1000, tz).date()
    day = timedelta(days=1)
    start_today, end_today = _boundary(today, start, tz), _boundary(today, end, tz)
    if start > end:  # quiet hours wrap midnight: 20:00-09:00
        if t < end_today:
            return _boundary(today - day, start, tz), end_today, True
        if t >= start_today:
            return start_today, _boundary(today + day, end, tz), True
        return end_today, start_today, False
    # quiet hours within one day: 01:00-06:00
    if start_today <= t < end_today:
        return start_today, end_today, True
    if t < start_today:
        return _boundary(today - day, end, tz), start_today, False
    return end_today, _boundary(today + day, start, tz), False


def quiet_until(zones: tuple[ZoneInfo, ...], hours: QuietHours, t: int) -> tuple[int, str] | None:
    """Return (the first instant >= t outside quiet hours in every zone, the zone that set it).

    None if t itself is outside quiet hours everywhere. Raises NoCommonDaytime if the
    zones never agree.
    """
    if hours.start_minute == hours.end_minute or not zones:
        return None
    at, deciding = t, ""
    while at - t <= _SEARCH_MS:
        latest, latest_zone = at, deciding
        for tz in zones:
            _, to, quiet = period(tz, hours, at)
            if quiet and to > latest:
                latest, latest_zone = to, tz.key
        if latest == at:
            return None if at == t else (at, deciding)
        at, deciding = latest, latest_zone
    raise NoCommonDaytime


class NoCommonDaytime(ValueError):
    """The zones of a number are never all outside quiet hours at once."""


def _sources(
    timezone: str | None, zones: tuple[str, ...], region: str
) -> list[tuple[str, tuple[str, ...]]]:
    sources: list[tuple[str, tuple[str, ...]]] = []
    if timezone:
        sources.append(("account", (timezone,)))
    if zones:
        sources.append(("number", zones))
    sources.append(("region", region_zones(region)))
    return sources


def hold(account: Account | None, recipient: Recipient, hours: QuietHours, now: int) -> Hold | None:
    """Return the hold for a marketing message decided at `now`, or None to send it now."""
    timezone = account.timezone if account is not None else None
    return _hold_in_minute(timezone, recipient.zones, recipient.region, hours, now // MINUTE_MS)


@lru_cache(maxsize=8192)
def _hold_in_minute(
    timezone: str | None, zones: tuple[str, ...], region: str, hours: QuietHours, minute: int
) -> Hold | None:
    # A campaign asks this of thousands of recipients in the same few zones at once.
    # Quiet hours begin and end on a whole local minute, and every zone's offset is a
    # whole number of minutes, so the answer is the same for any instant of one UTC
    # minute: computed at its first instant, cached per minute.
    return hold_at(timezone, zones, region, hours, minute * MINUTE_MS)


def hold_at(
    timezone: str | None, number_zones: tuple[str, ...], region: str, hours: QuietHours, now: int
) -> Hold | None:
    """Compute `hold` for exactly `now`, uncached, from the zones it would use."""
    first: tuple[str, ZoneInfo] | None = None
    for source, names in _sources(timezone, number_zones, region):
        zones = tuple(tz for tz in map(zone, names) if tz is not None)
        if not zones:
            continue
        if first is None:
            first = (source, zones[0])
        try:
            until = quiet_until(zones, hours, now)
        except NoCommonDaytime:
            continue
        return None if until is None else _hold(until, source, len(zones), hours)
    if first is None:
        return None  # the local time is unknown
    source, tz = first
    until = quiet_until((tz,), hours, now)
    return None if until is None else _hold(until, source, 1, hours)


@lru_cache(maxsize=4096)
def _hold(until: tuple[int, str], source: str, zones: int, hours: QuietHours) -> Hold:
    # Cached: everyone held in one zone tonight shares the same morning and words.
    at, name = until
    local = datetime.fromtimestamp(at / 1000, zone(name))
    window = f"{_clock(hours.start_minute)}-{_clock(hours.end_minute)}"
    # The account's zone is linked-account data: details (which businesses may see)
    # speak of "the user's time zone" instead of naming it.
    where = "in the user's time zone" if source == "account" else name
    if zones > 1:
        window += f" in all {zones} time zones of the {source}"
    return Hold(at, name, f"held until {local:%H:%M} {where} (quiet hours {window})")


def quiet_hours_verdict(event: BusinessEvent, held: Hold | None) -> Objection | None:
    """Return QUIET_HOURS_EXPIRED if the event expires before its hold ends, else None."""
    if held is None or event.expires_at is None or event.expires_at > held.until:
        return None
    return Reason.QUIET_HOURS_EXPIRED, f"expires before it may be sent: {held.detail}"

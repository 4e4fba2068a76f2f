"""Quiet hours: marketing at night in the user's local time is held until morning."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain.decide import decide
from pipeline.domain.models import (
    Account,
    AccountStatus,
    BusinessEvent,
    Candidate,
    Category,
    Consent,
    Deliver,
    EventKind,
    Policy,
    QuietHours,
    Reason,
    Recipient,
    SubscriberState,
    Suppress,
    Template,
)
from pipeline.domain.quiet_hours import (
    hold,
    hold_at,
    quiet_hours_verdict,
    quiet_until,
    region_zones,
    zone,
)

HOURS = QuietHours()
POLICY = Policy("quiet")


def _at(local: str, tz: str) -> int:
    """Epoch ms of an ISO local time in a zone."""
    return int(datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def _local(ms: int, tz: str) -> str:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def _account(timezone: str | None = None) -> Account:
    return Account("x", AccountStatus.ACTIVE, "en", "ID", 0, timezone, ("sale",))


def _recipient(region: str = "ID", *zones: str) -> Recipient:
    return Recipient(0, "s1", region, zones)


JAKARTA = _recipient("ID", "Asia/Jakarta")


@pytest.mark.parametrize(
    ("local", "held_until"),
    [
        ("2024-05-01 19:59", None),
        ("2024-05-01 20:00", "2024-05-02 09:00"),
        ("2024-05-01 23:30", "2024-05-02 09:00"),
        ("2024-05-02 00:00", "2024-05-02 09:00"),
        ("2024-05-02 08:59", "2024-05-02 09:00"),
        ("2024-05-02 09:00", None),
        ("2024-05-02 12:00", None),
    ],
)
def test_quiet_hours_are_20_to_9_local(local: str, held_until: str | None) -> None:
    """From 20:00 to 09:00 local a message is held until 09:00; otherwise it goes now."""
    held = hold(None, JAKARTA, HOURS, _at(local, "Asia/Jakarta"))
    assert (None if held is None else _local(held.until, "Asia/Jakarta")) == held_until


def test_the_hold_detail_names_the_number_zone_and_the_hours() -> None:
    """The detail reads "held until 09:00 Asia/Jakarta (quiet hours 20:00-09:00)"."""
    held = hold(None, JAKARTA, HOURS, _at("2024-05-01 21:00", "Asia/Jakarta"))
    assert held is not None
    assert held.detail == "held until 09:00 Asia/Jakarta (quiet hours 20:00-09:00)"


@pytest.mark.parametrize(
    ("tz", "evening", "morning_utc"),
    [
        # New York springs forward on 2024-03-10 and falls back on 2024-11-03.
        ("America/New_York", "2024-03-09 22:00", "2024-03-10 13:00"),
        ("America/New_York", "2024-03-10 21:00", "2024-03-11 13:00"),
        ("America/New_York", "2024-11-02 23:00", "2024-11-03 14:00"),
        ("America/New_York", "2024-11-02 19:00", None),
        # Madrid springs forward on 2024-03-31 and falls back on 2024-10-27.
        ("Europe/Madrid", "2024-03-30 23:00", "2024-03-31 07:00"),
        ("Europe/Madrid", "2024-03-31 01:59", "2024-03-31 07:00"),
        ("Europe/Madrid", "2024-10-26 22:00", "2024-10-27 08:00"),
    ],
)
def test_the_hold_ends_at_9_local_across_a_dst_change(
    tz: str, evening: str, morning_utc: str | None
) -> None:
    """Across a daylight-saving change the hold still ends at 09:00 local (UTC shifts)."""
    held = hold(_account(tz), _recipient("ES"), HOURS, _at(evening, tz))
    if morning_utc is None:
        assert held is None
        return
    assert held is not None
    assert _local(held.until, "UTC") == morning_utc
    assert _local(held.until, tz).endswith(" 09:00")


def test_every_zone_of_the_number_must_be_out_of_quiet_hours() -> None:
    """Daytime in Moscow but night in Vladivostok holds until both agree it is day."""
    number = _recipient("RU", "Europe/Moscow", "Asia/Vladivostok")
    at = _at("2024-05-01 10:00", "UTC")  # 13:00 Moscow, 20:00 Vladivostok
    held = hold(None, number, HOURS, at)
    assert held is not None
    # Vladivostok's 09:00 is 02:00 in Moscow; Moscow's 09:00 is 16:00 in Vladivostok.
    assert _local(held.until, "Europe/Moscow") == "2024-05-02 09:00"
    assert held.zone == "Europe/Moscow"
    assert held.detail == (
        "held until 09:00 Europe/Moscow (quiet hours 20:00-09:00 in all 2 time zones of the number)"
    )
    assert hold(None, number, HOURS, _at("2024-05-01 06:00", "UTC")) is None


def test_a_multi_zone_country_holds_while_one_zone_is_still_night() -> None:
    """A Russian mobile number (16 zones): 10:00 in Moscow is still too early in the west."""
    number = _recipient("RU", *region_zones("RU"))
    assert "Europe/Bucharest" in number.zones and "Asia/Anadyr" in number.zones
    at = _at("2024-01-15 12:00", "Asia/Anadyr")  # Anadyr noon: 02:00 in Bucharest
    held = hold(None, number, HOURS, at)
    assert held is not None
    for tz in number.zones:
        assert quiet_until((zone(tz),), HOURS, held.until) is None  # type: ignore[arg-type]


def test_the_account_zone_wins_and_is_never_named() -> None:
    """The account's time zone (linked-account data) decides, and the detail hides it."""
    at = _at("2024-05-01 21:00", "Asia/Tokyo")  # 19:00 in Jakarta
    assert hold(None, JAKARTA, HOURS, at) is None
    held = hold(_account("Asia/Tokyo"), JAKARTA, HOURS, at)
    assert held is not None and _local(held.until, "Asia/Tokyo") == "2024-05-02 09:00"
    assert "Tokyo" not in held.detail and "in the user's time zone" in held.detail


def test_an_unknown_account_zone_falls_back_to_the_number() -> None:
    """A malformed or unknown account time zone is ignored, not an error."""
    at = _at("2024-05-01 21:00", "Asia/Jakarta")
    for bad in ("Mars/Olympus", "../etc/passwd", ""):
        held = hold(_account(bad), JAKARTA, HOURS, at)
        assert held is not None and held.zone == "Asia/Jakarta"


def test_without_zones_the_region_decides() -> None:
    """A candidate without zones uses the zones of its region's example numbers."""
    held = hold(None, _recipient("JP"), HOURS, _at("2024-05-01 22:00", "Asia/Tokyo"))
    assert held is not None and held.zone == "Asia/Tokyo"
    assert "of the region" not in held.detail  # one zone: named, no "all N zones"


def test_without_any_known_zone_nothing_is_held() -> None:
    """If no local time can be known, the message is not held."""
    assert hold(None, _recipient("ZZ"), HOURS, _at("2024-05-01 23:00", "UTC")) is None


def test_zones_that_never_agree_fall_back_to_the_region() -> None:
    """Honolulu, London and Tokyo share no daytime: the region's zone decides instead."""
    number = _recipient("JP", "Pacific/Honolulu", "Europe/London", "Asia/Tokyo")
    held = hold(None, number, HOURS, _at("2024-01-10 22:00", "Asia/Tokyo"))
    assert held is not None and held.zone == "Asia/Tokyo"
    assert _local(held.until, "Asia/Tokyo") == "2024-01-11 09:00"


def test_quiet_hours_within_one_day_are_supported() -> None:
    """A policy with quiet hours 01:00-06:00 holds only between those."""
    hours = QuietHours(start_minute=60, end_minute=360)
    assert hold(None, JAKARTA, hours, _at("2024-05-01 00:30", "Asia/Jakarta")) is None
    held = hold(None, JAKARTA, hours, _at("2024-05-01 01:00", "Asia/Jakarta"))
    assert held is not None and _local(held.until, "Asia/Jakarta") == "2024-05-01 06:00"
    assert hold(None, JAKARTA, hours, _at("2024-05-01 23:00", "Asia/Jakarta")) is None


def _promo(expires_at: int | None = None, kind: EventKind = EventKind.PROMOTION) -> Candidate:
    event = BusinessEvent(
        "p1", "b1", kind, 0, (), Template("sale", "en", ("x",)), expires_at=expires_at,
        tags=("sale",),
    )  # fmt: skip
    category = Category.MARKETING if kind == EventKind.PROMOTION else Category.UTILITY
    return Candidate(event, category, JAKARTA)


STATE = SubscriberState(account=_account(), consents=MappingProxyType({"b1": Consent(True, True)}))
NIGHT = _at("2024-05-01 22:00", "Asia/Jakarta")
MORNING = _at("2024-05-02 09:00", "Asia/Jakarta")


def test_marketing_at_night_is_delivered_with_deliver_after() -> None:
    """decide holds night-time marketing: Deliver under rule quiet_hours, deliver_after 09:00."""
    decision = decide(_promo(), STATE, POLICY, NIGHT)
    assert isinstance(decision, Deliver)
    assert (decision.rule, decision.deliver_after) == ("quiet_hours", MORNING)
    assert decision.detail.startswith("held until 09:00 Asia/Jakarta (quiet hours 20:00-09:00); ")


def test_marketing_that_would_expire_first_is_suppressed() -> None:
    """An expiry at or before the end of quiet hours makes it QUIET_HOURS_EXPIRED."""
    decision = decide(_promo(expires_at=MORNING), STATE, POLICY, NIGHT)
    assert isinstance(decision, Suppress) and decision.reason == Reason.QUIET_HOURS_EXPIRED
    assert decision.rule == "quiet_hours"
    later = decide(_promo(expires_at=MORNING + 1), STATE, POLICY, NIGHT)
    assert isinstance(later, Deliver) and later.deliver_after == MORNING


def test_quiet_hours_verdict_without_a_hold_is_none() -> None:
    """No hold, no expiry problem, whatever the event's expiry."""
    assert quiet_hours_verdict(_promo(expires_at=NIGHT + 1).event, None) is None


@pytest.mark.parametrize(
    "kind", [EventKind.GATE_CHANGE, EventKind.FLIGHT_CANCELLATION, EventKind.SHIPMENT_UPDATE]
)
def test_utility_is_never_held(kind: EventKind) -> None:
    """Quiet hours are for marketing only: utility at night goes out at once."""
    decision = decide(_promo(kind=kind), STATE, POLICY, NIGHT)
    assert isinstance(decision, Deliver) and decision.deliver_after is None


def test_a_policy_without_quiet_hours_holds_nothing() -> None:
    """start == end means no quiet hours at all."""
    policy = replace(POLICY, quiet_hours=QuietHours(start_minute=0, end_minute=0))
    decision = decide(_promo(), STATE, policy, NIGHT)
    assert isinstance(decision, Deliver) and decision.deliver_after is None


_ZONES = ("Asia/Jakarta", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Adelaide",
          "America/St_Johns", "Europe/Madrid", "America/New_York", "Pacific/Chatham",
          "Europe/Moscow", "Asia/Vladivostok")  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.integers(min_value=1_700_000_000_000, max_value=1_900_000_000_000),
    st.sampled_from((None, *_ZONES)),
    st.lists(st.sampled_from(_ZONES), max_size=3, unique=True).map(tuple),
    st.sampled_from(("ID", "ES", "AU", "US", "RU", "IN")),
    st.sampled_from((QuietHours(), QuietHours(60, 6 * 60), QuietHours(22 * 60 + 30, 7 * 60 + 45))),
)
def test_the_per_minute_hold_cache_gives_the_exact_answer_at_any_instant(
    now: int, timezone: str | None, zones: tuple[str, ...], region: str, hours: QuietHours
) -> None:
    """hold() (cached per UTC minute) equals the uncached computation at the very instant."""
    account = Account("6281200000000", AccountStatus.ACTIVE, "en", region, 0, timezone=timezone)
    recipient = Recipient(0, "s" * 64, region, zones)
    assert hold(account, recipient, hours, now) == hold_at(timezone, zones, region, hours, now)

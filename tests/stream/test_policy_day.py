"""A scripted day of traffic through a real worker on the embedded broker.

The worker's clock is moved through the day with HERALD_CLOCK_OFFSET_FILE (a test-only
setting), so rolling windows, quiet hours and coalescing are exercised on the real path.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pipeline import topics
from pipeline.domain.keys import normalise, subscriber_key
from pipeline.settings import Settings
from tests.stream.test_pipeline import collect, send

pytestmark = pytest.mark.broker

JAKARTA = ZoneInfo("Asia/Jakarta")
# Tomorrow in Jakarta, so every scripted instant is ahead of the wall clock.
DAY = (datetime.now(JAKARTA) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
A, B, C, AIR, POST, BANK, SHADY, TINY = (
    "shop-a", "shop-b", "shop-c", "air", "post", "bank", "shady", "tiny",
)  # fmt: skip

CAPPED = "+6281100000001"  # opted in to every marketer; interested in electronics
STOPPER = "+6281100000002"  # says "Stop" to shop A before its promotion
REPORTER = "+6281100000003"  # reported shop A
AMERICAN = "+12015550104"  # a +1 number: marketing is restricted there
UNINTERESTED = "+6281100000005"  # interests do not match the promotions
NIGHT = "+6281100000006"  # gets a promotion at night
FLYER = "+6281100000007"  # on flight HX1
PARCELS = "+6281100000008"  # expects two parcels
EVERYONE = [CAPPED, STOPPER, REPORTER, AMERICAN, UNINTERESTED, NIGHT, FLYER, PARCELS]
MARKETERS = (A, B, C, SHADY)

POLICY = """
[links]
blocked_domains = ["malware.example"]

[business_limits.tiers]
TIER_1 = 3
UNLIMITED = "unlimited"

[businesses.shop-a]
tier = "UNLIMITED"
[businesses.shop-b]
tier = "UNLIMITED"
[businesses.shop-c]
tier = "UNLIMITED"
[businesses.air]
tier = "UNLIMITED"
[businesses.post]
tier = "UNLIMITED"
[businesses.bank]
tier = "UNLIMITED"
"""


def at(hours: float, day: int = 0) -> int:
    """Epoch ms of a local Jakarta time on the scripted day."""
    return int((DAY + timedelta(days=day, hours=hours)).timestamp() * 1000)


def link(phone: str, interests: list[str]) -> dict[str, Any]:
    return {"phone": phone, "status": "ACTIVE", "locale": "id", "country": "ID",
            "timezone": "Asia/Jakarta", "interests": interests, "linked_accounts": {},
            "updated_at": at(0) - 86_400_000}  # fmt: skip


def signal(phone: str, business: str | None, kind: str, when: int, **extra: Any) -> dict[str, Any]:
    return {"phone": phone, "business_id": business, "kind": kind, "scope": "ALL",
            "text": None, "source": "app", "consent_version": "v1", "occurred_at": when,
            **extra}  # fmt: skip


def event(event_id: str, business: str, kind: str, who: list[str], when: int,
          **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {"event_id": event_id, "business_id": business, "kind": kind, "occurred_at": when,
            "expires_at": when + 48 * 3_600_000, "recipients": who, "entity_id": None,
            "entity_version": None, "tags": [], "offer": None, "payload": None,
            "template": {"name": event_id, "language": "id", "params": [event_id]},
            **extra}  # fmt: skip


def promo(event_id: str, business: str, who: list[str], when: int, **extra: Any) -> dict[str, Any]:
    return event(event_id, business, "PROMOTION", who, when, tags=["electronics"],
                 payload={"Promotion": {"campaign_id": event_id}}, **extra)  # fmt: skip


def delay(event_id: str, version: int, minutes: int, when: int) -> dict[str, Any]:
    return event(event_id, AIR, "FLIGHT_DELAY", [FLYER], when, entity_id="HX1",
                 entity_version=version, payload={"FlightDelay": {
                     "flight": "HX1", "delay_minutes": minutes,
                     "new_departure": at(20) + minutes * 60_000, "gate": None}})  # fmt: skip


def parcel(event_id: str, parcel_id: str, version: int, when: int) -> dict[str, Any]:
    return event(event_id, POST, "SHIPMENT_UPDATE", [PARCELS], when, entity_id=parcel_id,
                 entity_version=version, payload={"ShipmentStatus": {
                     "status": f"S{version}", "location": None, "eta": None}})  # fmt: skip


class Day:
    """Drives the worker's clock and collects the outcomes of each scripted step."""

    def __init__(self, settings: Settings, clock_file: Path) -> None:
        self.settings = settings
        self.clock_file = clock_file
        self.seen = 0

    def move_to(self, when: int) -> None:
        self.clock_file.write_text(str(when - time.time_ns() // 1_000_000))

    def outcomes(self) -> dict[tuple[str, str], dict[str, Any]]:
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for topic in (topics.DELIVERIES, topics.SUPPRESSIONS):
            for r in collect(self.settings, topic, 0, timeout=1):
                r["outcome"] = r.get("reason") or "DELIVERED"
                found[(r["event_id"], r["subscriber"])] = r
        return found

    def step(self, when: int, events: list[dict[str, Any]], pairs: int) -> None:
        """At `when`, publish events and wait for their `pairs` outcomes."""
        self.move_to(when)
        send(self.settings, topics.BUSINESS_EVENTS, events)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(self.outcomes()) >= self.seen + pairs:
                self.seen += pairs
                return
            time.sleep(0.3)
        raise AssertionError(f"waited for {pairs} outcomes after {self.seen}")


def test_a_scripted_day_gets_the_expected_outcome_from_each_rule(
    settings: Settings, worker_factory: Any, tmp_path: Path
) -> None:
    """Each rule decides the recipients it should, on the real path, across a day."""
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    clock = tmp_path / "clock"
    day = Day(settings, clock)
    day.move_to(at(8))
    worker = worker_factory(HERALD_POLICY_FILE=str(policy), HERALD_CLOCK_OFFSET_FILE=str(clock))

    links = [link(p, ["electronics", "travel"]) for p in EVERYONE if p != UNINTERESTED]
    links.append(link(UNINTERESTED, ["gardening"]))
    signals = [
        signal(p, b, "OPT_IN", at(7)) for p in EVERYONE for b in (*MARKETERS, AIR, POST, BANK)
    ]
    signals += [
        signal(STOPPER, A, "INBOUND_MESSAGE", at(7.5), text="Stop kirim promo"),
        signal(REPORTER, A, "REPORT", at(7.5)),
    ]
    send(settings, topics.ACCOUNT_LINKS, links)
    send(settings, topics.USER_SIGNALS, signals)
    send(settings, topics.BUSINESS_PROFILES, [
        {"business_id": SHADY, "tier": "UNLIMITED", "verified": False, "status": "SUSPENDED",
         "reason": "abuse on a linked app", "updated_at": at(6)}])  # fmt: skip
    worker.wait_consumed({topics.ACCOUNT_LINKS: len(links), topics.USER_SIGNALS: len(signals)})
    time.sleep(1)  # the business profile is read by every worker's reference reader

    marketing_audience = [CAPPED, STOPPER, REPORTER, AMERICAN, UNINTERESTED]
    day.step(at(8), [delay("hx1-v1", 1, 20, at(8))], 1)
    day.step(at(8.1), [delay("hx1-v2", 2, 30, at(8.1))], 1)
    day.step(at(8.25), [delay("hx1-v3", 3, 60, at(8.25))], 1)
    day.step(at(9.5), [promo("a-1", A, marketing_audience, at(9.5))], 5)
    day.step(at(10.5), [promo("a-2", A, [CAPPED], at(10.5))], 1)
    day.step(at(11), [parcel("p1-v3", "P1", 3, at(11))], 1)
    day.step(at(11 + 1 / 60), [parcel("p1-v2", "P1", 2, at(11 + 1 / 60))], 1)
    day.step(at(12), [parcel("p2-v1", "P2", 1, at(12)),
                      parcel("p3-v1", "P3", 1, at(12) + 3_000)], 2)  # fmt: skip
    day.step(at(13 + 40 / 60), [promo("b-1", B, [CAPPED], at(13 + 40 / 60))], 1)
    day.step(at(14), [promo("c-1", C, [CAPPED], at(14))], 1)
    day.step(at(14.5), [promo("shady-1", SHADY, [CAPPED], at(14.5))], 1)
    night = at(21)
    flash = promo("c-flash", C, [FLYER], night, expires_at=night + 3_600_000)
    day.step(night, [promo("c-night", C, [NIGHT], night), flash], 2)
    day.step(at(21.5), [event("otp-1", BANK, "ONE_TIME_PASSCODE", [NIGHT], at(21.5),
                              expires_at=at(21.5) + 300_000,
                              template={"name": "otp", "language": "id", "params": ["123456"]},
                              payload={"Passcode": {"ttl_seconds": 300}})], 1)  # fmt: skip
    next_morning = at(9.5 + 1 / 60, day=1)
    bad_link = {"name": "l", "language": "id", "params": ["https://go.malware.example/x"]}
    link_promo = promo("b-link", B, [UNINTERESTED], next_morning + 1, template=bad_link)
    day.step(next_morning, [promo("a-3", A, [CAPPED], next_morning), link_promo], 2)
    day.step(at(10, day=1), [event("tiny-1", TINY, "SERVICE_UPDATE", EVERYONE[:5], at(10, 1))], 5)

    out = day.outcomes()

    def outcome(event_id: str, phone: str) -> str:
        key = subscriber_key(normalise(phone)[0], settings.subscriber_secret.reveal())
        return str(out[(event_id, key)]["outcome"])

    assert outcome("hx1-v1", FLYER) == "DELIVERED"
    assert outcome("hx1-v2", FLYER) == "COALESCED"  # 10 min later, moved only 10 min
    assert outcome("hx1-v3", FLYER) == "DELIVERED"  # moved 40 min since the last delivered
    assert outcome("a-1", CAPPED) == "DELIVERED"
    assert outcome("a-1", STOPPER) == "OPTED_OUT"
    assert outcome("a-1", REPORTER) == "REPORTED"
    assert outcome("a-1", AMERICAN) == "COUNTRY_RESTRICTED"
    assert outcome("a-1", UNINTERESTED) == "NOT_RELEVANT"
    assert outcome("a-2", CAPPED) == "BUSINESS_USER_CAP"  # one per business per 24 h
    assert outcome("p1-v3", PARCELS) == "DELIVERED"
    assert outcome("p1-v2", PARCELS) == "SUPERSEDED"  # an older status after a newer one
    assert outcome("p2-v1", PARCELS) == "DELIVERED"
    assert outcome("p3-v1", PARCELS) == "PAIR_RATE"  # 3 s after the last from the business
    assert outcome("b-1", CAPPED) == "DELIVERED"  # second marketing message today
    assert outcome("c-1", CAPPED) == "USER_CAP"  # a third within 24 h
    assert outcome("shady-1", CAPPED) == "BUSINESS_SUSPENDED"
    held = out[("c-night", subscriber_key(normalise(NIGHT)[0],
                                          settings.subscriber_secret.reveal()))]  # fmt: skip
    assert held["outcome"] == "DELIVERED" and held["deliver_after"] == at(9, day=1)
    assert outcome("c-flash", FLYER) == "QUIET_HOURS_EXPIRED"
    assert outcome("otp-1", NIGHT) == "DELIVERED"  # passcodes bypass quiet hours
    assert outcome("a-3", CAPPED) == "DELIVERED"  # 24 h and a minute later: the slot is free
    assert outcome("b-link", UNINTERESTED) == "LINK_BLOCKED"
    tiny = [outcome("tiny-1", p) for p in EVERYONE[:5]]
    assert tiny.count("BUSINESS_LIMIT") == 2  # tier limit 3 unique users a day
    for o in out.values():
        assert o["policy_version"].startswith("p-") and o["rule"] and o["detail"]


def test_a_stop_followed_by_a_promotion_is_suppressed_every_time(
    settings: Settings, worker_factory: Any
) -> None:
    """The opt-out race: STOP then a promotion to the same user, 100 of 100 suppressed."""
    worker = worker_factory()
    now = int(time.time() * 1000)
    users = [f"+62812{n:08d}" for n in range(100)]
    links = [link(p, ["electronics"]) for p in users]
    opt_ins = [signal(p, A, "OPT_IN", now - 60_000) for p in users]
    send(settings, topics.ACCOUNT_LINKS, links)
    send(settings, topics.USER_SIGNALS, opt_ins)
    worker.wait_consumed({topics.ACCOUNT_LINKS: 100, topics.USER_SIGNALS: 100})
    for i, phone in enumerate(users):
        send(settings, topics.USER_SIGNALS, [signal(phone, A, "INBOUND_MESSAGE", now, text="STOP")])
        send(settings, topics.BUSINESS_EVENTS, [promo(f"race-{i}", A, [phone], now)])
    suppressions = collect(settings, topics.SUPPRESSIONS, 100, timeout=90)
    deliveries = collect(settings, topics.DELIVERIES, 0, timeout=1)
    assert deliveries == []
    assert len(suppressions) == 100
    assert {s["reason"] for s in suppressions} == {"OPTED_OUT"}

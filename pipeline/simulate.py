"""Seeded, realistic traffic for demos, tests and benchmarks.

Subscribers across several countries with linked accounts; consent given and
withdrawn (including STOP replies); an airline with full flights and delay updates;
a courier with parcels moving through statuses; a retailer's promotion to most
subscribers; passcodes; and the mistakes real upstream systems make (invalid numbers,
stale notices, resends, garbage bytes).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pipeline import topics
from pipeline.domain.models import HOUR_MS

AIRLINE, COURIER, RETAILER, BANK = "skyways-air", "parcelgo", "megamart", "securebank"
FASHION, GADGETS = "fashionhub", "gadgetzone"  # more marketers: the cross-business caps
TINY_SHOP = "tiny-shop"  # default tier (250 unique users a day): the business limit
SHADY = "shady-deals"  # suspended for abuse on a linked app: sends nothing
MARKETERS = (RETAILER, FASHION, GADGETS)

# (country, dialling prefix, national number generator, locale, time zones)
COUNTRIES: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("ID", "+62", "812{:08d}", "id_ID", ("Asia/Jakarta", "Asia/Makassar", "Asia/Jayapura")),
    ("IN", "+91", "98{:08d}", "en_IN", ("Asia/Kolkata",)),
    ("BR", "+55", "119{:08d}", "pt_BR", ("America/Sao_Paulo", "America/Manaus")),
    ("ES", "+34", "6{:08d}", "es_ES", ("Europe/Madrid", "Atlantic/Canary")),
    ("US", "+1", "2015550{:03d}", "en_US", ("America/New_York", "America/Los_Angeles")),
)
INTERESTS = ("travel", "electronics", "fashion", "groceries", "sports", "books", "beauty", "home")
STOP_REPLIES = ("STOP", "stop please", "Berhenti", "baja por favor", "PARAR agora", "Stop!")
STOP_ALL_REPLIES = ("STOP ALL", "berhenti semua", "BAJA TODO")
INVALID_NUMBERS = ("+12", "12345", "not-a-number", "+999 000", "+62 1")


@dataclass(frozen=True)
class Scenario:
    seed: int = 7
    subscribers: int = 5_000
    scale: float = 1.0  # multiplies flights, parcels, promotion size and passcodes
    start_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)


@dataclass(frozen=True)
class Traffic:
    """What a scenario publishes: (topic, JSON object) pairs in order, plus raw garbage."""

    setup: list[tuple[str, dict[str, Any]]]  # account links and consent, published first
    events: list[tuple[str, dict[str, Any]]]  # business events and later signals
    garbage: list[bytes]  # bytes that are not Herald records, for dead-letters


def _numbers(rng: random.Random, n: int) -> list[tuple[str, tuple[str, str, str, tuple[str, ...]]]]:
    seen: set[str] = set()
    out: list[tuple[str, tuple[str, str, str, tuple[str, ...]]]] = []
    while len(out) < n:
        country, prefix, pattern, locale, zones = rng.choice(COUNTRIES)
        limit = 999 if country == "US" else 10**8 - 1
        number = prefix + pattern.format(rng.randint(0, limit))
        if number not in seen:
            seen.add(number)
            out.append((number, (country, locale, prefix, zones)))
    return out


def build_traffic(s: Scenario) -> Traffic:
    """Generate the scenario's records, deterministically from its seed."""
    rng = random.Random(s.seed)
    now = s.start_ms
    people = _numbers(rng, s.subscribers)
    setup: list[tuple[str, dict[str, Any]]] = [
        (topics.BUSINESS_PROFILES, {"business_id": SHADY, "tier": "TIER_2", "verified": False,
                                    "status": "SUSPENDED", "reason": "abuse on a linked app",
                                    "updated_at": now - HOUR_MS}),
        *[(topics.BUSINESS_PROFILES, {"business_id": b, "tier": "TIER_3", "verified": True,
                                      "status": "ACTIVE", "reason": None,
                                      "updated_at": now - HOUR_MS}) for b in (FASHION, GADGETS)],
        (topics.LINK_REPUTATION, {"domain": "cheap-deals.example", "verdict": "BLOCKED",
                                  "source": "link-scanner", "updated_at": now - HOUR_MS}),
    ]  # fmt: skip
    events: list[tuple[str, dict[str, Any]]] = []
    phones = [p for p, _ in people]

    for phone, (country, locale, _prefix, zones) in people:
        setup.append((topics.ACCOUNT_LINKS, {
            "phone": phone,
            "status": "DELETED" if rng.random() < 0.02 else "ACTIVE",
            "locale": locale,
            "timezone": rng.choice(zones) if rng.random() < 0.8 else None,
            "country": country,
            "interests": rng.sample(INTERESTS, rng.randint(1, 4)),
            "linked_accounts": {"social": f"fb-{rng.getrandbits(40):x}",
                                "photos": f"ig-{rng.getrandbits(40):x}"},
            "updated_at": now - rng.randint(1, 90) * 24 * HOUR_MS,
        }))  # fmt: skip

        def signal(
            kind: str,
            business: str | None,
            scope: str = "ALL",
            text: str | None = None,
            p: str = phone,
        ) -> tuple[str, dict[str, Any]]:
            return (topics.USER_SIGNALS, {
                "phone": p, "business_id": business, "kind": kind, "scope": scope,
                "text": text, "source": "app", "consent_version": "2026-01",
                "occurred_at": now - rng.randint(1, 30) * HOUR_MS,
            })  # fmt: skip

        for business, share in ((AIRLINE, 0.7), (COURIER, 0.6), (BANK, 0.5)):
            if rng.random() < share:
                setup.append(signal("OPT_IN", business, "UTILITY"))
        for business, share in ((RETAILER, 0.6), (FASHION, 0.5), (GADGETS, 0.5), (SHADY, 0.2)):
            if rng.random() < share:
                setup.append(signal("OPT_IN", business, "ALL"))
        # Withdrawals and feedback, the way real users give them.
        roll = rng.random()
        if roll < 0.05:
            setup.append(signal("OPT_OUT", RETAILER, "MARKETING"))
        elif roll < 0.08:
            business = rng.choice((RETAILER, AIRLINE, COURIER))
            setup.append(signal("INBOUND_MESSAGE", business, text=rng.choice(STOP_REPLIES)))
        elif roll < 0.09:
            setup.append(signal("BLOCK", rng.choice((RETAILER, COURIER))))
        elif roll < 0.10:
            setup.append(signal("INBOUND_MESSAGE", None, text=rng.choice(STOP_ALL_REPLIES)))
        elif roll < 0.12:
            setup.append(signal("REPORT", rng.choice(MARKETERS)))
        elif roll < 0.14:
            setup.append(signal("NOT_INTERESTED", None))
        elif roll < 0.20:
            # Wrote to the shop recently: its marketing inside that window is not counted.
            setup.append(signal("INBOUND_MESSAGE", RETAILER, text="is the blue one in stock?"))

    def event(kind: str, business: str, recipients: list[str], **extra: Any) -> dict[str, Any]:
        base = {
            "event_id": f"{business}-{kind.lower()}-{rng.getrandbits(48):012x}",
            "business_id": business, "kind": kind, "occurred_at": now,
            "expires_at": None, "recipients": recipients, "entity_id": None,
            "entity_version": None, "tags": [], "offer": None, "payload": None,
            "template": {"name": kind.lower(), "language": "en", "params": []},
        }  # fmt: skip
        base.update(extra)
        return base

    unknown = [p for p, _ in _numbers(random.Random(s.seed + 1), max(10, s.subscribers // 20))]

    # The airline: full flights, delay updates, a gate change, the odd cancellation.
    for f in range(max(1, int(4 * s.scale))):
        flight = f"SK{100 + f}"
        pax = rng.sample(phones, min(len(phones), rng.randint(150, 300))) + rng.sample(unknown, 3)
        departure = now + rng.randint(2, 30) * HOUR_MS
        delay = rng.choice((20, 45, 90))
        first = event("FLIGHT_DELAY", AIRLINE, pax, entity_id=flight, entity_version=1,
                      expires_at=departure + delay * 60_000,
                      template={"name": "flight_delay", "language": "en",
                                "params": [flight, str(delay)]},
                      payload={"FlightDelay": {"flight": flight, "delay_minutes": delay,
                                               "new_departure": departure + delay * 60_000,
                                               "gate": None}})  # fmt: skip
        events.append((topics.BUSINESS_EVENTS, first))
        # The airline's system retries the same event: idempotent, same outcome.
        events.append((topics.BUSINESS_EVENTS, dict(first)))
        # ...and resends the same status under a new event id: DUPLICATE.
        events.append(
            (topics.BUSINESS_EVENTS, {**first, "event_id": first["event_id"] + "-resend"})
        )
        # A cascade of delay updates: a small change is coalesced, a big one goes out.
        for version, minutes in ((2, delay + 10), (3, delay + 60)):
            events.append((topics.BUSINESS_EVENTS, event(
                "FLIGHT_DELAY", AIRLINE, pax, entity_id=flight, entity_version=version,
                expires_at=departure + minutes * 60_000,
                template={"name": "flight_delay", "language": "en",
                          "params": [flight, str(minutes)]},
                payload={"FlightDelay": {"flight": flight, "delay_minutes": minutes,
                                         "new_departure": departure + minutes * 60_000,
                                         "gate": None}})))  # fmt: skip
        if f % 2 == 0:
            events.append((topics.BUSINESS_EVENTS, event(
                "GATE_CHANGE", AIRLINE, pax, entity_id=flight, entity_version=4,
                expires_at=departure,
                template={"name": "gate_change", "language": "en", "params": [flight, "B12"]},
                payload={"GateChange": {"flight": flight, "old_gate": "A3", "new_gate": "B12",
                                        "departure": departure}})))  # fmt: skip
        if f % 4 == 3:
            events.append(
                (
                    topics.BUSINESS_EVENTS,
                    event(
                        "FLIGHT_CANCELLATION",
                        AIRLINE,
                        pax,
                        entity_id=flight,
                        entity_version=3,
                        template={"name": "flight_cancelled", "language": "en", "params": [flight]},
                        payload={"FlightCancellation": {"flight": flight, "reason": "weather"}},
                    ),
                )
            )

    # The courier: each parcel's latest status; now and then statuses arrive out of
    # order (an older one after a newer one) or two parcels update within seconds.
    statuses = ("LABEL_CREATED", "IN_TRANSIT", "OUT_FOR_DELIVERY", "DELIVERED")

    def parcel_event(parcel: str, who: list[str], version: int) -> dict[str, Any]:
        status = statuses[version - 1]
        kind = "DELIVERY_UPDATE" if status == "DELIVERED" else "SHIPMENT_UPDATE"
        return event(kind, COURIER, who, entity_id=parcel, entity_version=version,
                     template={"name": "parcel_status", "language": "en",
                               "params": [parcel, status]},
                     payload={"ShipmentStatus": {"status": status, "location": None,
                                                 "eta": None}})  # fmt: skip

    for p in range(int(200 * s.scale)):
        parcel, who = f"PG{p:07d}", [rng.choice(phones)]
        version = rng.randint(2, 4)
        events.append((topics.BUSINESS_EVENTS, parcel_event(parcel, who, version)))
        if p % 10 == 0:  # the older status, late
            events.append((topics.BUSINESS_EVENTS, parcel_event(parcel, who, version - 1)))
        if p % 10 == 5:  # a second parcel for the same person, seconds later
            events.append((topics.BUSINESS_EVENTS, parcel_event(f"PX{p:07d}", who, 1)))

    # A stale service notice (expired before it was sent) and invalid numbers.
    events.append(
        (
            topics.BUSINESS_EVENTS,
            event(
                "SERVICE_UPDATE",
                COURIER,
                rng.sample(phones, min(50, len(phones))),
                occurred_at=now - 3 * HOUR_MS,
                expires_at=now - HOUR_MS,
                template={"name": "depot_closed", "language": "en", "params": ["Jakarta"]},
                payload={"ServiceUpdate": {"service": "depot", "status": "closed"}},
            ),
        )
    )
    events.append(
        (
            topics.BUSINESS_EVENTS,
            event(
                "SERVICE_UPDATE",
                COURIER,
                list(INVALID_NUMBERS) + rng.sample(phones, 5),
                template={"name": "depot_open", "language": "en", "params": ["Jakarta"]},
                payload={"ServiceUpdate": {"service": "depot", "status": "open"}},
            ),
        )
    )

    def promotion(
        business: str,
        audience: list[str],
        tags: list[str],
        params: list[str],
        expires_in: int = 48 * HOUR_MS,
        **extra: Any,
    ) -> None:
        for i in range(0, len(audience), 1_000):
            events.append((topics.BUSINESS_EVENTS, event(
                "PROMOTION", business, audience[i:i + 1_000], tags=tags,
                expires_at=now + expires_in,
                offer={"description": "weekend offer", "code": "SAVE20",
                       "discount_percent": 20, "valid_until": now + expires_in},
                template={"name": "weekend_sale", "language": "en", "params": params},
                payload={"Promotion": {"campaign_id": f"{business}-weekend"}},
                **extra)))  # fmt: skip

    share = min(s.scale, 1.0)
    # The retailer's sale to most subscribers (tagged, so relevance can be judged); held
    # for users in quiet hours, or not sent at all if the flash sale ends first.
    promotion(
        RETAILER,
        rng.sample(phones, int(len(phones) * 0.9 * share)),
        ["electronics", "home"],
        ["20%"],
    )
    promotion(
        RETAILER,
        rng.sample(phones, int(len(phones) * 0.3 * share)),
        ["electronics"],
        ["flash"],
        expires_in=HOUR_MS,
    )
    # Two more marketers the same day: the cross-business caps.
    promotion(
        FASHION, rng.sample(phones, int(len(phones) * 0.6 * share)), ["fashion", "beauty"], ["30%"]
    )
    promotion(
        GADGETS,
        rng.sample(phones, int(len(phones) * 0.6 * share)),
        ["electronics", "sports"],
        ["15%"],
    )
    # Untargeted blast (tags nobody has), a link to a blocked domain, a suspended sender.
    promotion(FASHION, rng.sample(phones, int(len(phones) * 0.1 * share)), ["pets"], ["pets"])
    promotion(
        GADGETS,
        rng.sample(phones, int(len(phones) * 0.1 * share)),
        ["electronics"],
        ["https://www.cheap-deals.example/phone"],
    )
    promotion(SHADY, rng.sample(phones, int(len(phones) * 0.1 * share)), ["electronics"], ["90%"])
    # A small shop on the default tier reaches more people than its limit allows.
    events.append((topics.BUSINESS_EVENTS, event(
        "SERVICE_UPDATE", TINY_SHOP, rng.sample(phones, min(len(phones), 400)),
        template={"name": "opening_hours", "language": "en", "params": ["10:00"]},
        payload={"ServiceUpdate": {"service": "store", "status": "open"}})))  # fmt: skip

    # Passcodes, one recipient each, short-lived.
    for _ in range(int(100 * s.scale)):
        events.append((topics.BUSINESS_EVENTS, event(
            "ONE_TIME_PASSCODE", BANK, [rng.choice(phones)], expires_at=now + 5 * 60_000,
            template={"name": "passcode", "language": "en",
                      "params": [f"{rng.randint(0, 999_999):06d}"]},
            payload={"Passcode": {"ttl_seconds": 300}})))  # fmt: skip

    # A passcode whose parameter is far too long for a code: an invalid event.
    events.append((topics.BUSINESS_EVENTS, event(
        "ONE_TIME_PASSCODE", BANK, [rng.choice(phones)], expires_at=now + 5 * 60_000,
        template={"name": "passcode", "language": "en", "params": ["123456 is your code " * 3]},
        payload={"Passcode": {"ttl_seconds": 300}})))  # fmt: skip
    garbage = [b"not avro at all", b"\xc3\x01" + b"\x00" * 8 + b"unknown schema", b""]
    return Traffic(setup=setup, events=events, garbage=garbage)


def encoded(
    traffic_part: list[tuple[str, dict[str, Any]]], secret: bytes
) -> Iterator[tuple[str, bytes, bytes]]:
    """Yield (topic, key, Avro value) for JSON records, as `herald publish` would."""
    from pipeline.codec import default_registry
    from pipeline.jsonio import json_to_record

    codec = default_registry()
    for topic, obj in traffic_part:
        key, record = json_to_record(topic, json.loads(json.dumps(obj)), secret)
        yield topic, key, codec.encode(topics.RECORD_OF_TOPIC[topic], record)


def publish(
    settings: Any,
    records: Iterator[tuple[str, bytes, bytes]],
    rate: float = 0,
    duration: float = 0,
) -> Counter[str]:
    """Send encoded records in order, at most `rate` per second, for at most `duration` s."""
    from pipeline.clients import producer

    counts: Counter[str] = Counter()
    prod = producer(settings)
    try:
        started = time.monotonic()
        for i, (topic, key, value) in enumerate(records):
            if duration and time.monotonic() - started > duration:
                break
            if rate:
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    prod.flush()
                    time.sleep(delay)
            prod.send(topic, key=key, value=value)
            counts[topic] += 1
        prod.flush()
    finally:
        prod.close()
    return counts


def garbage_records(traffic: Traffic) -> Iterator[tuple[str, bytes, bytes]]:
    """Yield the scenario's garbage as records on business-events."""
    for junk in traffic.garbage:
        yield topics.BUSINESS_EVENTS, b"garbage", junk


def publish_scenario(
    settings: Any, scenario: Scenario, rate: float = 0, duration: float = 0, settle: float = 2.0
) -> dict[str, int]:
    """Publish a scenario: setup, a pause for workers to apply it, events, garbage."""
    traffic = build_traffic(scenario)
    secret = settings.subscriber_secret.reveal()
    counts = publish(settings, encoded(traffic.setup, secret))
    time.sleep(settle)  # consent first: there is no ordering across topics
    counts += publish(settings, encoded(traffic.events, secret), rate, duration)
    counts += publish(settings, garbage_records(traffic))
    return dict(counts)

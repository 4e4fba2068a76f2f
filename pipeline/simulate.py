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
    setup: list[tuple[str, dict[str, Any]]] = []
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
        if rng.random() < 0.6:
            setup.append(signal("OPT_IN", RETAILER, "ALL"))
        # Withdrawals, the way real users withdraw.
        roll = rng.random()
        if roll < 0.05:
            setup.append(signal("OPT_OUT", RETAILER, "MARKETING"))
        elif roll < 0.08:
            business = rng.choice((RETAILER, AIRLINE, COURIER))
            setup.append(signal("INBOUND_MESSAGE", business, text=rng.choice(STOP_REPLIES)))
        elif roll < 0.09:
            setup.append(signal("BLOCK", rng.choice((RETAILER, COURIER))))

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
        if f % 2 == 0:
            events.append((topics.BUSINESS_EVENTS, event(
                "GATE_CHANGE", AIRLINE, pax, entity_id=flight, entity_version=2,
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

    # The courier: parcels moving through statuses, one recipient each.
    statuses = ("LABEL_CREATED", "IN_TRANSIT", "OUT_FOR_DELIVERY", "DELIVERED")
    for p in range(int(200 * s.scale)):
        parcel = f"PG{p:07d}"
        who = [rng.choice(phones)]
        for version, status in enumerate(statuses[: rng.randint(1, 4)], 1):
            kind = "DELIVERY_UPDATE" if status == "DELIVERED" else "SHIPMENT_UPDATE"
            events.append(
                (
                    topics.BUSINESS_EVENTS,
                    event(
                        kind,
                        COURIER,
                        who,
                        entity_id=parcel,
                        entity_version=version,
                        template={
                            "name": "parcel_status",
                            "language": "en",
                            "params": [parcel, status],
                        },
                        payload={
                            "ShipmentStatus": {"status": status, "location": None, "eta": None}
                        },
                    ),
                )
            )

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

    # The retailer's promotion to most subscribers, in events of 1,000 recipients.
    audience = rng.sample(phones, min(len(phones), int(len(phones) * 0.9 * min(s.scale, 1.0))))
    for i in range(0, len(audience), 1_000):
        events.append((topics.BUSINESS_EVENTS, event(
            "PROMOTION", RETAILER, audience[i:i + 1_000], tags=["electronics", "home"],
            expires_at=now + 48 * HOUR_MS,
            offer={"description": "20% off headphones", "code": "HEAR20",
                   "discount_percent": 20, "valid_until": now + 48 * HOUR_MS},
            template={"name": "weekend_sale", "language": "en", "params": ["20%"]},
            payload={"Promotion": {"campaign_id": "weekend-sale"}})))  # fmt: skip

    # Passcodes, one recipient each, short-lived.
    for _ in range(int(100 * s.scale)):
        events.append((topics.BUSINESS_EVENTS, event(
            "ONE_TIME_PASSCODE", BANK, [rng.choice(phones)], expires_at=now + 5 * 60_000,
            template={"name": "passcode", "language": "en",
                      "params": [f"{rng.randint(0, 999_999):06d}"]},
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

"""The whole pipeline on the embedded broker: real worker process, real Kafka clients."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import pytest
from kafka import KafkaProducer

from pipeline import topics
from pipeline.clients import read_topic
from pipeline.codec import default_registry
from pipeline.domain.keys import normalise, subscriber_key
from pipeline.explain import explain
from pipeline.jsonio import json_to_record
from pipeline.settings import Settings

pytestmark = pytest.mark.broker

NOW = int(time.time() * 1000)
HOUR = 3_600_000
BIZ = "acme-retail"
POST = "acme-post"  # a second business: consent is per business

# Who is who; every number is valid in its country.
ALICE = "+6281200000001"  # opted in to everything
BRUNO = "+5511900000002"  # opted in, then OPT_OUT
CARMEN = "+34600000003"  # opted in, then replied "por favor BAJA"
DEV = "+919800000004"  # opted in, then BLOCK
EMMA = "+12015550105"  # account, but never opted in
FARID = "+6281200000006"  # opted in, account DELETED
GHOST = "+6281200000007"  # no account at all
INVALID = "+12"  # does not parse
UTILITY_ONLY = "+5511900000008"  # opted in to utility only
EVERYONE = [ALICE, BRUNO, CARMEN, DEV, EMMA, FARID, GHOST, INVALID, UTILITY_ONLY]
PHONE_DIGITS = [p.lstrip("+") for p in EVERYONE if p != INVALID]


def link(phone: str, status: str = "ACTIVE") -> dict[str, Any]:
    return {"phone": phone, "status": status, "locale": "en", "country": "ID",
            "timezone": None, "interests": ["home"],
            "linked_accounts": {"social": f"fb-{phone[-4:]}-linked"},
            "updated_at": NOW - HOUR}  # fmt: skip


def signal(
    phone: str, kind: str, scope: str = "ALL", text: str | None = None, business: str | None = BIZ
) -> dict[str, Any]:
    return {"phone": phone, "business_id": business, "kind": kind, "scope": scope, "text": text,
            "source": "app", "consent_version": "v1", "occurred_at": NOW - HOUR}  # fmt: skip


def event(event_id: str, kind: str, recipients: list[str], **extra: Any) -> dict[str, Any]:
    e = {"event_id": event_id, "business_id": BIZ, "kind": kind, "occurred_at": NOW,
         "expires_at": NOW + 24 * HOUR, "recipients": recipients, "entity_id": None,
         "entity_version": None, "tags": [], "offer": None, "payload": None,
         "template": {"name": kind.lower(), "language": "en", "params": ["x"]}}  # fmt: skip
    e.update(extra)
    return e


def send(settings: Settings, topic: str, objs: list[dict[str, Any]]) -> None:
    codec = default_registry()
    producer = KafkaProducer(bootstrap_servers=settings.broker, acks="all")
    secret = settings.subscriber_secret.reveal()
    for obj in objs:
        key, record = json_to_record(topic, obj, secret)
        producer.send(topic, key=key, value=codec.encode(topics.RECORD_OF_TOPIC[topic], record))
    producer.flush()
    producer.close()


def send_raw(settings: Settings, topic: str, key: bytes, value: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.broker)
    producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def collect(
    settings: Settings, topic: str, expected: int, timeout: float = 60
) -> list[dict[str, Any]]:
    """Read a topic until `expected` records arrived (or the timeout), decoded."""
    codec = default_registry()
    deadline = time.monotonic() + timeout
    out: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        out = [codec.decode(topics.RECORD_OF_TOPIC[topic], v)
               for _k, v, _p, _o in read_topic(settings, topic, idle_timeout=1.0)]  # fmt: skip
        if len(out) >= expected:
            return out
        time.sleep(0.5)
    return out


def key_of(settings: Settings, phone: str) -> str:
    return subscriber_key(normalise(phone)[0], settings.subscriber_secret.reveal())


def test_every_recipient_gets_exactly_one_outcome_with_the_right_reason(
    settings: Settings, worker_factory: Any
) -> None:
    """Consent, account and input rules decide each recipient; bad bytes go to dead-letters."""
    worker = worker_factory()
    links = [link(p) for p in (ALICE, BRUNO, CARMEN, DEV, EMMA, UTILITY_ONLY)]
    links.append(link(FARID, status="DELETED"))
    signals = [
        signal(p, "OPT_IN", business=b)
        for p in (ALICE, BRUNO, CARMEN, DEV, FARID)
        for b in (BIZ, POST)
    ]
    signals += [
        signal(UTILITY_ONLY, "OPT_IN", scope="UTILITY"),
        signal(UTILITY_ONLY, "OPT_IN", scope="UTILITY", business=POST),
        signal(BRUNO, "OPT_OUT", business=None),  # from every business
        signal(CARMEN, "INBOUND_MESSAGE", text="Hola, por favor BAJA de la lista"),
        signal(DEV, "BLOCK"),
    ]
    send(settings, topics.ACCOUNT_LINKS, links)
    send(settings, topics.USER_SIGNALS, signals)
    worker.wait_consumed({topics.ACCOUNT_LINKS: len(links), topics.USER_SIGNALS: len(signals)})

    promo = event("promo-1", "PROMOTION", EVERYONE, tags=["home"],
                  payload={"Promotion": {"campaign_id": "c1"}})  # fmt: skip
    parcel = event("parcel-1", "SHIPMENT_UPDATE", EVERYONE, entity_id="P1", entity_version=1,
                   business_id=POST,
                   payload={"ShipmentStatus": {"status": "IN_TRANSIT", "location": None,
                                               "eta": None}})  # fmt: skip
    stale = event("stale-1", "SERVICE_UPDATE", [ALICE], occurred_at=NOW - 3 * HOUR,
                  business_id=POST, expires_at=NOW - HOUR)  # fmt: skip
    send(settings, topics.BUSINESS_EVENTS, [promo])
    send_raw(settings, topics.BUSINESS_EVENTS, b"broken", b"\x00 definitely not avro")
    # After the garbage: a good event, a retry of promo-1, a resend of parcel-1's status.
    resend = {**parcel, "event_id": "parcel-1-resend"}
    send(settings, topics.BUSINESS_EVENTS, [parcel, promo, resend, stale])

    pairs_per_event = len(EVERYONE)
    expected = pairs_per_event * 4 + 1  # promo twice, parcel, resend, stale
    deliveries = collect(settings, topics.DELIVERIES, 0, timeout=1)
    suppressions: list[dict[str, Any]] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        deliveries = collect(settings, topics.DELIVERIES, 0, timeout=1)
        suppressions = collect(settings, topics.SUPPRESSIONS, 0, timeout=1)
        if len(deliveries) + len(suppressions) >= expected:
            break
        time.sleep(1)
    assert len(deliveries) + len(suppressions) == expected, worker.log()[-3000:]

    outcomes: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for d in deliveries:
        outcomes[(d["event_id"], d["subscriber"])].add(("DELIVERED", d["message_id"]))
    for s in suppressions:
        outcomes[(s["event_id"], s["subscriber"])].add((s["reason"], s["message_id"]))
    # One distinct outcome per (event, recipient), even for promo-1 published twice.
    assert all(len(v) == 1 for v in outcomes.values()), outcomes

    def reason(event_id: str, phone: str) -> str:
        ((outcome, _mid),) = outcomes[(event_id, key_of(settings, phone))]
        return outcome

    assert reason("promo-1", ALICE) == "DELIVERED"
    assert reason("promo-1", BRUNO) == "OPTED_OUT"
    assert reason("promo-1", CARMEN) == "OPTED_OUT"
    assert reason("promo-1", DEV) == "BLOCKED"
    assert reason("promo-1", EMMA) == "NO_CONSENT"
    assert reason("promo-1", UTILITY_ONLY) == "NO_CONSENT"
    assert reason("promo-1", FARID) == "NO_ACCOUNT"
    assert reason("promo-1", GHOST) == "NO_ACCOUNT"
    assert reason("parcel-1", ALICE) == "DELIVERED"
    assert reason("parcel-1", UTILITY_ONLY) == "DELIVERED"
    assert reason("parcel-1", CARMEN) == "DELIVERED"  # her STOP was to the other business
    assert reason("parcel-1", BRUNO) == "OPTED_OUT"
    assert reason("parcel-1", DEV) == "DELIVERED"  # blocked the retailer, not the courier
    assert reason("parcel-1-resend", ALICE) == "DUPLICATE"
    assert reason("parcel-1-resend", UTILITY_ONLY) == "DUPLICATE"
    assert reason("parcel-1-resend", BRUNO) == "OPTED_OUT"
    assert reason("stale-1", ALICE) == "EXPIRED"
    invalid = [s for s in suppressions if s["reason"] == "INVALID_RECIPIENT"]
    assert {s["event_id"] for s in invalid} == {"promo-1", "parcel-1", "parcel-1-resend"}
    assert all(s["recipient_index"] == EVERYONE.index(INVALID) for s in invalid)

    # The retry of promo-1 repeats its outcomes exactly: same ids, nothing new.
    promo_deliveries = [d for d in deliveries if d["event_id"] == "promo-1"]
    assert len(promo_deliveries) == 2
    assert promo_deliveries[0]["message_id"] == promo_deliveries[1]["message_id"]
    assert promo_deliveries[0]["wa_id"] == ALICE.lstrip("+")

    # "Why didn't Bruno get promo-1?" answered from the output topics, for his number only.
    (why,) = explain(settings, "promo-1", BRUNO)
    assert (why["outcome"], why["reason"], why["rule"]) == ("SUPPRESSED", "OPTED_OUT", "consent")
    assert why["policy_version"].startswith("p-") and why["detail"]
    assert why["times_recorded"] == 2  # promo-1 was published twice: one decision, recorded twice
    assert explain(settings, "promo-1", "+6281299999999") == []  # a number never messaged

    # The garbage is a dead letter with where it came from and why, and nothing personal.
    dead = collect(settings, topics.DEAD_LETTERS, 1)
    assert len(dead) == 1
    assert dead[0]["source_topic"] == topics.BUSINESS_EVENTS
    assert dead[0]["stage"] == "decode"
    assert dead[0]["value"] == b"\x00 definitely not avro"
    metadata = " ".join(str(v) for k, v in dead[0].items() if k not in ("key", "value"))
    assert dead[0]["error_type"] and dead[0]["error_message"]

    # No phone number or linked-account id in any suppression or dead-letter metadata.
    text = " ".join(str(s) for s in suppressions) + metadata
    for digits in PHONE_DIGITS:
        assert digits not in text
        assert digits[-9:] not in text
    for phone in EVERYONE:
        assert f"fb-{phone[-4:]}-linked" not in text

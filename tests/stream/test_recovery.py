"""Subscriber state survives a killed worker: nothing of it is lost in recovery."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipeline import topics
from pipeline.clients import read_topic
from pipeline.domain.models import HOUR_MS
from pipeline.settings import Settings
from tests.stream.test_pipeline import collect, send

pytestmark = pytest.mark.broker

BIZ = "megamart"  # tier 3 in the default policy: 10,000 users a day
SUBSCRIBERS = 2_000


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_opt_outs_survive_sigkill_and_restart(
    settings: Settings, worker_factory: Any, store: str
) -> None:
    """After SIGKILL and restart, every opt-out is still known (the changelog tail too)."""
    now = int(time.time() * 1000)
    phones = [f"+62813{n:08d}" for n in range(SUBSCRIBERS)]
    links = [{"phone": p, "status": "ACTIVE", "locale": "id", "country": "ID",
              "timezone": "Asia/Jakarta", "interests": ["home"], "linked_accounts": {},
              "updated_at": now - 60_000} for p in phones]  # fmt: skip

    def signal_(phone: str, kind: str, at: int) -> dict[str, Any]:
        return {"phone": phone, "business_id": BIZ, "kind": kind, "scope": "ALL", "text": None,
                "source": "app", "consent_version": "v1", "occurred_at": at}  # fmt: skip

    signals = [signal_(p, "OPT_IN", now - 50_000) for p in phones]
    signals += [signal_(p, "OPT_OUT", now - 40_000) for p in phones]

    first = worker_factory(HERALD_STORE=store)
    send(settings, topics.ACCOUNT_LINKS, links)
    send(settings, topics.USER_SIGNALS, signals)
    first.wait_consumed({topics.ACCOUNT_LINKS: len(links), topics.USER_SIGNALS: len(signals)})
    time.sleep(6)  # past faust's commit interval: the inputs will not be read again
    assert first.process is not None
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()

    # A stall detector would refetch lost events after 30 s: keep it out of the way.
    second = worker_factory(HERALD_STORE=store, HERALD_STALL_AFTER="600")
    # Published while the restarted worker joins and recovers its table: they wait,
    # prefetched, on input partitions the group has never committed, and must not be
    # dropped when recovery ends (pipeline/streams/seek_guard.py).
    promos = [
        {"event_id": f"promo-{i}", "business_id": BIZ, "kind": "PROMOTION", "occurred_at": now,
         "expires_at": now + 86_400_000, "recipients": phones[i : i + 1_000], "entity_id": None,
         "entity_version": None, "tags": ["home"], "offer": None,
         "payload": {"Promotion": {"campaign_id": "c"}},
         "template": {"name": "sale", "language": "id", "params": [str(i)]}}
        for i in range(0, SUBSCRIBERS, 1_000)
    ]  # fmt: skip
    send(settings, topics.BUSINESS_EVENTS, promos)
    suppressions = collect(settings, topics.SUPPRESSIONS, SUBSCRIBERS, timeout=120)
    assert collect(settings, topics.DELIVERIES, 0, timeout=1) == []
    reasons = Counter(s["reason"] for s in suppressions)
    assert reasons == Counter({"OPTED_OUT": SUBSCRIBERS}), (reasons, second.log()[-2000:])


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_a_business_window_survives_sigkill_and_restart(
    settings: Settings, worker_factory: Any, store: str, tmp_path: Path
) -> None:
    """A TIER_2 business (2,000 users a day) reaches 1,200 (three segments of the window),
    the worker is killed; after the restart 1,000 new users leave 200 over the limit; a
    day later the window has expired, its segments are deleted, and users count anew."""
    now = int(time.time() * 1000)
    business = "corner-store"

    def notice(n: int, phones: list[str], at: int = now) -> dict[str, Any]:
        return {"event_id": f"promo-{n}", "business_id": business, "kind": "PROMOTION",
                "occurred_at": at, "expires_at": at + 86_400_000, "recipients": phones,
                "entity_id": None, "entity_version": None, "tags": ["home"], "offer": None,
                "payload": {"Promotion": {"campaign_id": f"c{n}"}},
                "template": {"name": "sale", "language": "id", "params": [str(n)]}}  # fmt: skip

    phones = [f"+62814{n:08d}" for n in range(2_200)]
    first = worker_factory(HERALD_STORE=store)
    send(settings, topics.BUSINESS_PROFILES, [
        {"business_id": business, "tier": "TIER_2", "verified": True, "status": "ACTIVE",
         "reason": None, "updated_at": now - 60_000}])  # fmt: skip
    time.sleep(1)  # the profile is read by the worker's reference reader
    # In two goes, so the second batch adds to a segment the first one wrote.
    for start in (0, 600):
        events = [notice(i, phones[i : i + 200]) for i in range(start, start + 600, 200)]
        send(settings, topics.BUSINESS_EVENTS, events)
        before = collect(settings, topics.SUPPRESSIONS, start + 600, timeout=120)
    assert not [s for s in before if s["reason"] == "BUSINESS_LIMIT"]
    time.sleep(6)  # past faust's commit interval: the events will not be read again
    assert first.process is not None
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()

    clock = tmp_path / "clock-offset"
    clock.write_text("0")
    second = worker_factory(
        HERALD_STORE=store, HERALD_STALL_AFTER="600", HERALD_CLOCK_OFFSET_FILE=str(clock)
    )
    send(settings, topics.BUSINESS_EVENTS, [notice(1_200, phones[1_200:])])
    everything = collect(settings, topics.SUPPRESSIONS, 2_200, timeout=120)
    reasons = Counter(s["reason"] for s in everything if s["event_id"] == "promo-1200")
    assert reasons["BUSINESS_LIMIT"] == 200, (reasons, second.log()[-2000:])

    clock.write_text(str(25 * HOUR_MS))
    send(settings, topics.BUSINESS_EVENTS, [notice(2_200, phones[:1], now + 25 * HOUR_MS)])
    everything = collect(settings, topics.SUPPRESSIONS, 2_201, timeout=120)
    assert [s["reason"] for s in everything if s["event_id"] == "promo-2200"] == ["NO_ACCOUNT"]
    changelog = f"{settings.app_id}-businesses-changelog"
    deleted = sorted(k for k, v, _, _ in read_topic(settings, changelog) if v is None)
    assert deleted == [f"{business}\x1f{n}".encode() for n in range(4)], second.log()[-2000:]

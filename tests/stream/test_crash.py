"""Nothing lost, nothing doubled: workers killed and stopped under a sustained load.

CI runs a short version; `make soak` sets HERALD_SOAK=1 for a long one.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from typing import Any

import pytest

from pipeline import topics
from pipeline.broker import EmbeddedBroker
from pipeline.codec import default_registry
from pipeline.domain import KeyMaker
from pipeline.jsonio import json_to_record
from pipeline.settings import Settings
from pipeline.simulate import publish
from pipeline.verify import read_outcomes, wait_for_outcomes

pytestmark = pytest.mark.broker

SOAK = os.environ.get("HERALD_SOAK") == "1"
BIZ = "parcelgo"  # tier 4 in the default policy: no business limit in the way
SUBSCRIBERS = 5_000
EVENTS = 200 if SOAK else 50  # 1,000 recipients each
KILLS = 10 if SOAK else 5


def _setup(now: int) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
    phones = [f"+62814{n:08d}" for n in range(SUBSCRIBERS)]
    records: list[tuple[str, dict[str, Any]]] = []
    for p in phones:
        records.append((topics.ACCOUNT_LINKS, {
            "phone": p, "status": "ACTIVE", "locale": "id", "country": "ID",
            "timezone": "Asia/Jakarta", "interests": ["home"], "linked_accounts": {},
            "updated_at": now - 60_000}))  # fmt: skip
        records.append((topics.USER_SIGNALS, {
            "phone": p, "business_id": BIZ, "kind": "OPT_IN", "scope": "UTILITY", "text": None,
            "source": "app", "consent_version": "v1", "occurred_at": now - 50_000}))  # fmt: skip
    return phones, records


def _service_update(
    event_id: str, business: str, recipients: list[str], now: int, n: int
) -> dict[str, Any]:
    """A depot notice (utility) to `recipients`: the reliability checks' event."""
    return {
        "event_id": event_id, "business_id": business, "kind": "SERVICE_UPDATE",
        "occurred_at": now, "expires_at": now + 86_400_000, "recipients": recipients,
        "entity_id": None, "entity_version": None, "tags": [], "offer": None,
        "payload": {"ServiceUpdate": {"service": "depot", "status": f"s{n}"}},
        "template": {"name": "depot", "language": "id", "params": [f"notice {n}"]},
    }  # fmt: skip


def _events(phones: list[str], now: int) -> list[dict[str, Any]]:
    rng = random.Random(11)
    return [
        _service_update(f"svc-{i}", BIZ, rng.sample(phones, 1_000), now, i) for i in range(EVENTS)
    ]


def _encoded(records: list[tuple[str, dict[str, Any]]], secret: bytes) -> Any:
    codec = default_registry()
    for topic, obj in records:
        key, record = json_to_record(topic, obj, secret)
        yield topic, key, codec.encode(topics.RECORD_OF_TOPIC[topic], record)


def _expected_pairs(events: list[dict[str, Any]], secret: bytes) -> set[tuple[str, str]]:
    keys = KeyMaker(secret)
    return {(e["event_id"], keys.subscriber(p)) for e in events for p in e["recipients"]}


def test_sigkill_at_random_moments_loses_nothing_and_never_decides_twice(
    settings: Settings, worker_factory: Any
) -> None:
    """Kill -9 the worker repeatedly mid-run: every pair gets one outcome, never two."""
    now = int(time.time() * 1000)
    secret = settings.subscriber_secret.reveal()
    phones, setup = _setup(now)
    events = _events(phones, now)
    worker = worker_factory()
    publish(settings, _encoded(setup, secret))
    worker.wait_consumed({topics.ACCOUNT_LINKS: SUBSCRIBERS, topics.USER_SIGNALS: SUBSCRIBERS})

    rate = EVENTS / (40 if not SOAK else 150)  # events per second: the run outlasts the kills
    publisher = threading.Thread(
        target=publish,
        args=(settings, _encoded([(topics.BUSINESS_EVENTS, e) for e in events], secret), rate),
    )
    publisher.start()
    rng = random.Random(5)
    for _ in range(KILLS):
        time.sleep(rng.uniform(2.0, 6.0))
        assert worker.process is not None
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait()
        worker = worker_factory()
    publisher.join()

    expected = _expected_pairs(events, secret)
    report = wait_for_outcomes(settings, expected, (600 if SOAK else 240))
    print(report.summary())
    assert report.ok, (report.summary(), list(report.conflicting.items())[:5])
    outcomes = read_outcomes(settings, idle_timeout=1.0)
    # Every notice differs, so a DUPLICATE could only be a replay counted twice.
    assert not any("DUPLICATE" in o for o in outcomes.values())


def test_sigterm_mid_run_then_restart_emits_no_record_twice(
    settings: Settings, worker_factory: Any
) -> None:
    """A graceful stop commits what it emitted: the restarted worker repeats nothing."""
    now = int(time.time() * 1000)
    secret = settings.subscriber_secret.reveal()
    phones, setup = _setup(now)
    events = _events(phones, now)[:20]
    worker = worker_factory()
    publish(settings, _encoded(setup, secret))
    worker.wait_consumed({topics.ACCOUNT_LINKS: SUBSCRIBERS, topics.USER_SIGNALS: SUBSCRIBERS})
    publisher = threading.Thread(
        target=publish,
        args=(settings, _encoded([(topics.BUSINESS_EVENTS, e) for e in events], secret), 2.0),
    )
    publisher.start()
    time.sleep(4)
    worker.stop()  # SIGTERM, and wait for it to exit
    assert worker.process is not None and worker.process.returncode == 0, worker.log()[-2000:]
    worker = worker_factory()
    publisher.join()
    expected = _expected_pairs(events, secret)
    report = wait_for_outcomes(settings, expected, 120)
    print(report.summary())
    assert report.ok, report.summary()
    assert report.repeated_records == 0, report.summary()


def test_sigterm_while_a_batch_waits_on_the_broker_commits_nothing_unwritten(
    broker: EmbeddedBroker, settings: Settings, worker_factory: Any
) -> None:
    """Stopped mid-send (broker frozen), the worker finishes the batch before committing it."""
    now = int(time.time() * 1000)
    secret = settings.subscriber_secret.reveal()
    phones, setup = _setup(now)
    events = _events(phones, now)[:30]
    worker = worker_factory()
    publish(settings, _encoded(setup, secret))
    worker.wait_consumed({topics.ACCOUNT_LINKS: SUBSCRIBERS, topics.USER_SIGNALS: SUBSCRIBERS})
    publish(settings, _encoded([(topics.BUSINESS_EVENTS, e) for e in events], secret))
    deadline = time.monotonic() + 60
    while worker.progress().outcomes < 2_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    broker.pause()  # the agents' next sends wait on the broker, batches in hand
    try:
        time.sleep(1.0)
        assert worker.process is not None
        worker.process.send_signal(signal.SIGTERM)  # the stop cancels them in those sends
        time.sleep(2.0)
    finally:
        broker.resume()
    worker.process.wait(60)
    assert worker.process.returncode == 0, worker.log()[-2000:]
    worker_factory()
    report = wait_for_outcomes(settings, _expected_pairs(events, secret), 120)
    print(report.summary())
    assert report.ok, report.summary()


def test_scale_out_and_in_under_traffic_moves_state_without_loss(
    settings: Settings, worker_factory: Any
) -> None:
    """Three workers, one stopped, one started, a fourth added: one outcome per pair."""
    now = int(time.time() * 1000)
    secret = settings.subscriber_secret.reveal()
    phones, setup = _setup(now)
    events = _events(phones, now)[:30]
    workers = [worker_factory() for _ in range(3)]
    publish(settings, _encoded(setup, secret))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # the three share the inputs between them
        consumed = sum(w.progress().consumed[topics.USER_SIGNALS] for w in workers)
        if consumed >= SUBSCRIBERS:
            break
        time.sleep(0.5)
    publisher = threading.Thread(
        target=publish,
        args=(settings, _encoded([(topics.BUSINESS_EVENTS, e) for e in events], secret), 1.0),
    )
    publisher.start()
    time.sleep(6)
    workers[0].stop()  # partitions move to the others; their state follows
    time.sleep(6)
    workers.append(worker_factory())  # a replacement
    time.sleep(6)
    workers.append(worker_factory())  # and a fourth
    publisher.join()
    expected = _expected_pairs(events, secret)
    report = wait_for_outcomes(settings, expected, 180)
    print(report.summary())
    assert report.ok, (report.summary(), list(report.conflicting.items())[:5])
    outcomes = read_outcomes(settings, idle_timeout=1.0)
    assert not any("DUPLICATE" in o for o in outcomes.values())
    seen = {o for found in outcomes.values() for o in found}
    assert "DELIVERED" in seen and not seen & {"NO_ACCOUNT", "NO_CONSENT"}  # state moved too


def _rss_kib(pid: int) -> tuple[int, int]:
    """Return (resident, peak resident) KiB of a process, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def _decision_rate(worker: Any, settings: Settings, phones: list[str], now: int) -> float:
    """The worker's decisions per second, on this machine and now: 20 events published at
    once, timed on its own counter from the 2,000th outcome to the 20,000th."""
    secret = settings.subscriber_secret.reveal()
    events = [
        _service_update(f"calibrate-{i}", BIZ, random.Random(i).sample(phones, 1_000), now, i)
        for i in range(20)
    ]
    before = worker.progress().outcomes
    publish(settings, _encoded([(topics.BUSINESS_EVENTS, e) for e in events], secret))
    marks: dict[int, float] = {}
    deadline = time.monotonic() + 120
    while len(marks) < 2 and time.monotonic() < deadline:
        decided = worker.progress().outcomes - before
        for mark in (2_000, 20_000):
            if decided >= mark:
                marks.setdefault(mark, time.monotonic())
        time.sleep(0.05)
    assert len(marks) == 2, "the calibration events were not decided in 120 s"
    return 18_000 / max(marks[20_000] - marks[2_000], 0.05)


def test_overload_builds_a_backlog_that_drains_with_bounded_memory(
    settings: Settings, worker_factory: Any
) -> None:
    """Publish three times faster than the worker decides: lag grows, then drains."""
    now = int(time.time() * 1000)
    secret = settings.subscriber_secret.reveal()
    phones, setup = _setup(now)
    worker = worker_factory()
    publish(settings, _encoded(setup, secret))
    worker.wait_consumed({topics.ACCOUNT_LINKS: SUBSCRIBERS, topics.USER_SIGNALS: SUBSCRIBERS})
    assert worker.process is not None
    decisions_per_s = _decision_rate(worker, settings, phones, now)
    events_per_s = 3 * decisions_per_s / 1_000
    baseline, _ = _rss_kib(worker.process.pid)
    decided_before = worker.progress().outcomes
    events = _events(phones, now)  # 50 in CI, 200 in the soak
    publisher = threading.Thread(
        target=publish,
        args=(
            settings,
            _encoded([(topics.BUSINESS_EVENTS, e) for e in events], secret),
            events_per_s,
        ),
    )
    publisher.start()
    backlog_peak = 0
    published_pairs = len(events) * 1_000
    started = time.monotonic()
    while publisher.is_alive() or time.monotonic() - started < 5:
        decided = worker.progress().outcomes - decided_before
        elapsed = time.monotonic() - started
        published = int(min(elapsed * events_per_s, len(events))) * 1_000
        backlog_peak = max(backlog_peak, published - decided)
        time.sleep(0.5)
    publisher.join()
    expected = _expected_pairs(events, secret)
    report = wait_for_outcomes(settings, expected, 300)
    rss, peak = _rss_kib(worker.process.pid)
    print(
        f"worker decides ~{decisions_per_s:,.0f}/s, published at {events_per_s:.1f} events of "
        f"1,000 a second; backlog peak ~{backlog_peak:,} pairs of {published_pairs:,}; worker "
        f"RSS {baseline / 1024:.0f} MiB before, peak {peak / 1024:.0f} MiB, "
        f"{rss / 1024:.0f} MiB after; " + report.summary()
    )
    assert report.ok, report.summary()
    assert backlog_peak > published_pairs // 4  # it really was overloaded
    assert peak < baseline + 1024 * 1024  # bounded: under 1 GiB above its resting size

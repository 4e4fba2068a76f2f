"""The latency benchmark's re-offered simulated day: a schedule the worker cannot shortcut.

`day_events` copies the day's events for each open-loop level. A copy the worker took for
one it had already decided (the same id, content or entity version) would be suppressed
on a cheaper path than the day's own events, and the level would time something else.
"""

from __future__ import annotations

import random

from bench.latency import day_events
from bench.throughput import DayTraffic
from pipeline import topics

DAY_START = 1_800_000_000_000


def event(event_id: str, recipients: int, **fields: object) -> tuple[str, dict[str, object]]:
    return topics.BUSINESS_EVENTS, {
        "event_id": event_id,
        "occurred_at": DAY_START,
        "expires_at": None,
        "recipients": [f"+4420794600{i:02d}" for i in range(recipients)],
        "entity_id": None,
        "entity_version": None,
        "template": {"name": "t", "language": "en", "params": ["p"]},
        **fields,
    }


DAY = DayTraffic(
    events=[
        event("promo", 1000),
        event("parcel", 1, entity_id="PG1", entity_version=3),
        event("parcel", 1, entity_id="PG1", entity_version=3),  # sent twice under one id
        event("old", 50, occurred_at=DAY_START - 3_600_000, expires_at=DAY_START - 1),
    ],
    start_ms=DAY_START,
    outcomes=[1000, 1, 1, 0],  # "old" is a dead letter: expired
)


def test_slots_follow_the_decisions_due_at_the_offered_rate() -> None:
    planned, _ = day_events(DAY, 0, t0_ms=5_000.0, decisions_per_s=1000.0, seconds=1.5)
    slots = [at for at, _ in planned]
    # promo at 0, its 1,000 decisions take 1 s; the parcels 1 ms apart; the old event;
    # then the day again from 1.052 s, until 1.5 s have been offered.
    assert slots[:5] == [5_000, 6_000, 6_001, 6_002, 6_052]
    assert all(at - 5_000 < 1_500 for at in slots)


def test_outcomes_are_those_of_the_originals_copied() -> None:
    planned, outcomes = day_events(DAY, 0, 0.0, 1000.0, seconds=2.5)
    assert len(planned) == 9  # two laps and the first event of a third
    assert outcomes == 2 * 1002 + 1000


def test_every_copy_has_its_own_id_and_template_text() -> None:
    planned, _ = day_events(DAY, 0, 0.0, 1000.0, seconds=2.5)
    ids = [e["event_id"] for _, (_, e) in planned]
    assert len(set(ids)) == len(ids)
    promos = [e for _, (_, e) in planned if e["event_id"].startswith("promo")]
    assert len({tuple(e["template"]["params"]) for e in promos}) == len(promos)
    assert DAY.events[0][1]["template"]["params"] == ["p"]  # the originals are untouched


def test_entity_versions_rise_over_laps_and_levels() -> None:
    versions = []
    for level in range(3):
        planned, _ = day_events(DAY, level, 0.0, 1000.0, seconds=2.5)
        laps = [e["entity_version"] for _, (_, e) in planned if e.get("entity_id") == "PG1"]
        versions.append(laps)
    flat = [v for level in versions for v in level]
    assert all(v > 3 for v in flat)
    # Within a lap the day's pair keeps its one version; every lap after is above it.
    for earlier, later in zip(flat[::2], flat[2::2], strict=False):
        assert later > earlier


def test_times_move_with_the_slot_so_the_expired_event_stays_expired() -> None:
    planned, _ = day_events(DAY, 0, 10_000.0, 1000.0, seconds=1.1)
    at, (_, old) = next(p for p in planned if p[1][1]["event_id"].startswith("old"))
    assert old["expires_at"] < at <= old["occurred_at"] + 3_600_000
    promo_at, (_, promo) = planned[0]
    assert promo["occurred_at"] == promo_at


def test_the_day_is_interleaved_keeping_each_entitys_and_ids_order() -> None:
    from bench.throughput import interleaved
    from pipeline.simulate import Scenario, build_traffic

    built = build_traffic(Scenario(seed=7, subscribers=500)).events  # 24 entities of 2-6 events
    day = interleaved(built, random.Random(1))
    assert sorted(map(id, day)) == sorted(map(id, built))  # the same events, reordered
    kinds = [e["kind"] for _, e in day]
    assert kinds != [e["kind"] for _, e in built]
    # The passcodes, built last, are spread over the day.
    passcodes = [i for i, k in enumerate(kinds) if k == "ONE_TIME_PASSCODE"]
    assert passcodes[0] < len(day) // 4

    built_at = {id(e): n for n, (_, e) in enumerate(built)}
    for key in ("entity_id", "event_id"):
        positions: dict[object, list[int]] = {}
        for _, e in day:
            if e.get(key) is not None:
                positions.setdefault((e["business_id"], e[key]), []).append(built_at[id(e)])
        assert all(p == sorted(p) for p in positions.values()), key

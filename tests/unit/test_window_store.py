"""Business windows stored in segments: what a batch writes, and what a restart reads back."""

from __future__ import annotations

import random
from types import MappingProxyType

import orjson
import pytest

from pipeline.domain import BusinessWindow
from pipeline.domain.business_limit import admit
from pipeline.domain.models import HOUR_MS, BusinessProfile
from pipeline.policy import default_policy
from pipeline.streams.app import business_windows
from pipeline.streams.window_store import SEGMENT, Stored, WindowTable, encode_window

POLICY = default_policy()
BIG = BusinessProfile("b", "TIER_4")  # 100,000 users a day
T0 = 1_800_000_000_000


class Changelog:
    def get_topic_name(self) -> str:
        return "businesses-changelog"


class Table:
    """What the stage sees of a faust table: `get`, the local store `data`, the changelog."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.changelog_topic = Changelog()

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def replayed(self, records: list) -> Table:
        """A new worker's table, rebuilt from the changelog records (tombstones delete)."""
        fresh = Table()
        for r in records:
            if r.value is None:
                fresh.data.pop(r.key, None)
            else:
                fresh.data[r.key] = r.value
        return fresh


def users(start: int, n: int) -> list[str]:
    return [f"{i:064x}" for i in range(start, start + n)]


def reach(
    table: Table, known: dict[str, Stored], subscribers: list[str], now: int, size: int
) -> list:
    """One ingest batch: admit the subscribers for business b, write back; the records."""
    windows = WindowTable(table, known, size)
    _, _, window = admit(windows["b"], BIG, subscribers, POLICY, now)
    windows["b"] = window
    return windows.write_back(0)


def window_in(table: Table, size: int) -> dict[str, int]:
    return dict(WindowTable(table, {}, size)["b"].reached)


def test_reaching_a_few_more_users_writes_the_last_segment_and_the_head_only() -> None:
    table, known = Table(), {}
    reach(table, known, users(0, 10_000), T0, SEGMENT)
    records = reach(table, known, users(10_000, 5), T0 + 1_000, SEGMENT)
    assert sorted(r.key for r in records) == [b"b", b"b\x1f20"]  # 10,000 / 500 = segment 20
    assert sum(len(r.value) for r in records) < 2_000  # not the 810 KB of the whole window
    assert len(window_in(table, SEGMENT)) == 10_005


def test_a_window_of_a_hundred_thousand_users_never_writes_a_record_over_64_kb() -> None:
    table, known, everything = Table(), {}, []
    for i in range(0, 100_000, 5_000):
        everything += reach(table, known, users(i, 5_000), T0 + i, SEGMENT)
    assert max(len(r.value) for r in everything) < 64 * 1024
    assert len(encode_window(BusinessWindow(MappingProxyType(window_in(table, SEGMENT))))) > 8e6


def test_a_restart_reads_back_exactly_the_window_through_growth_and_expiry() -> None:
    rng = random.Random(3)
    table, known, changelog = Table(), {}, []
    expected = BusinessWindow()
    now = T0
    for _ in range(300):
        now += rng.choice((1, 60_000, HOUR_MS, 5 * HOUR_MS))
        batch = users(rng.randrange(400), rng.randrange(1, 12))
        _, _, expected = admit(expected, BIG, batch, POLICY, now)
        changelog += reach(table, known, batch, now, 7)
        assert window_in(table, 7) == dict(expected.reached)
        assert window_in(table.replayed(changelog), 7) == dict(expected.reached)
    assert len(expected.reached) < 400  # some expired along the way
    # Expired segments were deleted, not left behind: at most the live ones and the head.
    assert len(table.data) <= -(-len(expected.reached) // 7) + 2


def test_a_clock_stepped_back_rewrites_the_window_and_loses_nobody() -> None:
    table, known = Table(), {}
    u = users(0, 10)
    reach(table, known, u[0:5], T0, 7)
    reach(table, known, u[5:8], T0 + 20 * HOUR_MS, 7)
    reach(table, known, u[8:9], T0 - 10 * HOUR_MS, 7)  # the clock stepped back
    # Pruning at T0 + 25 h drops u0..u4 from the front and u8 from the end.
    records = reach(table, known, u[9:10], T0 + 25 * HOUR_MS, 7)
    want = {s: T0 + 20 * HOUR_MS for s in u[5:8]} | {u[9]: T0 + 25 * HOUR_MS}
    assert window_in(table, 7) == want
    assert window_in(Table().replayed(list(_all_records(table))), 7) == want
    assert {r.key for r in records if r.value is None} == {b"b\x1f0", b"b\x1f1"}  # old numbers


def _all_records(table: Table) -> list:
    from pipeline.streams.stages import OutRecord

    return [OutRecord("c", k, v, 0) for k, v in table.data.items()]


def test_a_window_an_older_herald_stored_whole_is_read_and_then_stored_in_segments() -> None:
    table, known = Table(), {}
    old = {u: T0 for u in users(0, 30)}
    table.data[b"b"] = orjson.dumps(old)
    assert window_in(table, 7) == old
    reach(table, known, users(30, 1), T0 + 1, 7)
    assert window_in(table, 7) == old | {users(30, 1)[0]: T0 + 1}
    assert isinstance(orjson.loads(table.data[b"b"]), list)


def test_a_window_another_worker_changed_is_read_again() -> None:
    table, mine, theirs = Table(), {}, {}
    reach(table, mine, users(0, 3), T0, 7)
    reach(table, theirs, users(3, 2), T0 + 1, 7)  # the partition moved and came back
    reach(table, mine, users(5, 1), T0 + 2, 7)
    assert window_in(table, 7) == {u: T0 for u in users(0, 3)} | {
        u: T0 + 1 for u in users(3, 2)
    } | {users(5, 1)[0]: T0 + 2}


def test_a_missing_segment_is_an_error_not_an_empty_window() -> None:
    table, known = Table(), {}
    reach(table, known, users(0, 20), T0, 7)
    del table.data[b"b\x1f1"]
    with pytest.raises(ValueError, match="segment 1"):
        window_in(table, 7)


def test_an_agents_batches_decode_a_window_once() -> None:
    """business_windows shares what it decoded between an agent's batches: the next
    batch takes the window written, without reading its segments again."""
    table, known = Table(), {}
    windows = business_windows(table, known)
    _, _, written = admit(windows["b"], BIG, users(0, 1_200), POLICY, T0)
    windows["b"] = written
    windows.write_back(0)
    del table.data[b"b\x1f1"]  # read again, this would be a missing segment
    assert business_windows(table, known)["b"] is written
    with pytest.raises(ValueError, match="segment 1"):
        business_windows(table, {})["b"]  # nothing shared: read from the table


def test_a_write_back_cut_short_reads_as_the_old_window_or_the_new_one() -> None:
    """Whatever prefix of a batch's records reaches the changelog (a worker killed mid-send),
    a restart reads one of the two windows, never a mix or a missing segment."""
    rng = random.Random(11)
    table, known, changelog = Table(), {}, []
    expected = BusinessWindow()
    now = T0
    for _ in range(200):
        now += rng.choice((1, HOUR_MS, 5 * HOUR_MS, 25 * HOUR_MS, -30 * HOUR_MS))
        before = dict(expected.reached)
        batch = users(rng.randrange(60), rng.randrange(0, 9))
        _, _, expected = admit(expected, BIG, batch, POLICY, now)
        records = reach(table, known, batch, now, 3)
        for cut in range(len(records)):
            got = window_in(table.replayed(changelog + records[:cut]), 3)
            assert got in (before, dict(expected.reached)), cut
        changelog += records


def test_an_older_heralds_window_emptied_by_its_first_write_reads_back_empty() -> None:
    table, known = Table(), {}
    table.data[b"b"] = orjson.dumps({u: T0 for u in users(0, 3)})
    reach(table, known, [], T0 + 25 * HOUR_MS, 7)  # all three expire, nobody is added
    assert window_in(table, 7) == {}
    reach(table, {}, users(3, 1), T0 + 26 * HOUR_MS, 7)  # another worker, nothing known
    assert window_in(table, 7) == {users(3, 1)[0]: T0 + 26 * HOUR_MS}

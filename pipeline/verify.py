"""Check Herald's promise on what is in the output topics: one outcome per pair.

Used by the crash, restart and scale-out tests and by `make soak`: read every record
of `deliveries` and `suppressions`, group by (event, subscriber), and report pairs with
no outcome, pairs with two different outcomes, and how many records were emitted more
than once (the visible cost of at-least-once).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline import topics
from pipeline.clients import read_topic
from pipeline.codec import default_registry
from pipeline.settings import Settings

Pair = tuple[str, str]  # (event_id, subscriber key)


@dataclass(frozen=True)
class OutcomeReport:
    expected: int
    decided: int  # pairs with at least one outcome
    missing: tuple[Pair, ...]
    conflicting: dict[Pair, set[str]]  # pair -> the different outcomes it got
    records: int
    repeated_records: int  # records beyond the first for their pair

    @property
    def ok(self) -> bool:
        return not self.missing and not self.conflicting

    def summary(self) -> str:
        return (
            f"{self.decided:,} of {self.expected:,} pairs decided, {len(self.missing):,} missing, "
            f"{len(self.conflicting):,} with conflicting outcomes; {self.records:,} records, "
            f"{self.repeated_records:,} emitted more than once"
        )


def read_outcomes(settings: Settings, idle_timeout: float = 2.0) -> dict[Pair, list[str]]:
    """Return every outcome recorded per (event, subscriber): DELIVERED or the reason."""
    codec = default_registry()
    outcomes: dict[Pair, list[str]] = defaultdict(list)
    for topic in (topics.DELIVERIES, topics.SUPPRESSIONS):
        for _key, value, _p, _o in read_topic(settings, topic, idle_timeout=idle_timeout):
            record = codec.decode(topics.RECORD_OF_TOPIC[topic], value)
            outcome = record.get("reason") or "DELIVERED"
            outcomes[(record["event_id"], record["subscriber"])].append(outcome)
    return outcomes


def check_outcomes(expected: Iterable[Pair], outcomes: dict[Pair, list[str]]) -> OutcomeReport:
    """Compare the pairs that must have an outcome with what the topics hold."""
    wanted = set(expected)
    missing = tuple(sorted(p for p in wanted if p not in outcomes))
    conflicting = {p: set(o) for p, o in outcomes.items() if len(set(o)) > 1}
    records = sum(len(o) for o in outcomes.values())
    return OutcomeReport(
        expected=len(wanted),
        decided=len(wanted) - len(missing),
        missing=missing,
        conflicting=conflicting,
        records=records,
        repeated_records=records - len(outcomes),
    )


def wait_for_outcomes(
    settings: Settings, expected: Iterable[Pair], timeout: float, poll: float = 2.0
) -> OutcomeReport:
    """Re-read the output topics until every expected pair has an outcome, or `timeout`."""
    import time

    wanted = set(expected)
    deadline = time.monotonic() + timeout
    while True:
        report = check_outcomes(wanted, read_outcomes(settings, idle_timeout=1.0))
        if not report.missing or time.monotonic() > deadline:
            return report
        time.sleep(poll)

"""Words in decision details: instants and durations."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from pipeline.domain.words import span, utc


@given(st.integers(min_value=0, max_value=4_102_444_800_000), st.booleans())
def test_utc_names_the_minute_of_any_instant(ms: int, with_date: bool) -> None:
    """utc() (cached per minute) reads exactly as the instant formatted afresh."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    assert utc(ms, with_date) == (f"{moment:%b %d %H:%M}" if with_date else f"{moment:%H:%M}")


def test_span_uses_the_largest_whole_unit() -> None:
    """Durations read as whole days, hours, minutes or seconds."""
    assert [span(x) for x in (172_800_000, 7_200_000, 120_000, 45_500, -5)] == [
        "2 d", "2 h", "2 min", "45 s", "0 s",
    ]  # fmt: skip

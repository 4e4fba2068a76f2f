"""Latency from publish to outcome under an open-loop load, and the targets of issue 5.

Open loop: events are published on a fixed schedule, whatever the worker does, at 25%,
50% and 75% of the sustained decision rate measured earlier in the same run (the
simulated day's rate; the campaign's if the day was skipped). Two kinds of traffic, one
after the other:

- **the simulated day** (`day`): the day's own business events, the traffic whose rate
  that is, interleaved and re-offered so that decisions are due at the offered rate.
  Most of its decisions are 1,000-recipient promotions, most of its events
  single-recipient updates and passcodes; `utility` percentiles are those of the
  non-promotion events.
- **small promotions** (`small`): `--latency-recipients` recipients each (default 5).
  They cost the worker more a decision than the day does, so shares of the day's rate
  are heavier loads for them: at 50% this has been an overload.

A late send is never skipped or re-timed: the schedule is the reference (no coordinated
omission).

Each outcome's latency = the timestamp of the outcome record on the broker (the
producer's create time, set by the worker's aiokafka producer when it hands the record
over; the type is recorded) minus the *intended* publish time of its event (the
schedule slot, also the event's `occurred_at` but for the day's one event published
hours late on purpose), matched by `event_id`. The time the
benchmark's own tail received the record is kept too, as an upper bound.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.throughput import (
    BENCH_SECRET,
    CpuMeter,
    DayTraffic,
    Encoded,
    GcMeter,
    GcSpent,
    PySpy,
    Run,
    inclusive_pyspy,
    summarise_pyspy,
)
from pipeline import topics
from pipeline.domain.models import HOUR_MS
from pipeline.simulate import RETAILER, encoded

TARGET_P50_MS, TARGET_P99_MS = 50.0, 250.0  # at 50% of the sustained rate


@dataclass(frozen=True)
class Level:
    traffic: str  # "day" or "small" (see the module's docstring)
    load: float  # share of the base rate
    decisions_per_s: float  # offered
    events: int
    outcomes: int
    seconds: float  # the schedule's length
    elapsed_s: float  # first slot to the last outcome written (CPU shares are over this)
    publish_lag_max_ms: float  # the latest any send left after its slot
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    received_p50_ms: float  # to the bench's tail receiving the record
    received_p99_ms: float
    utility_p50_ms: float  # the day's non-promotion events' outcomes; NaN for "small"
    utility_p99_ms: float
    utility_outcomes: int
    timestamp_type: int  # 0 create time (the producer's), 1 log-append time (the broker's)
    worker_cpu_s: float
    broker_cpu_s: float
    other_cpu_s: float
    gc: GcSpent  # the worker stood still for garbage collection

    @property
    def utility(self) -> str:
        """The day's utility percentiles as text ("; utility p50 … / p99 … ms"), or ""."""
        if self.traffic != "day":
            return ""
        return f"; utility p50 {self.utility_p50_ms:,.0f} / p99 {self.utility_p99_ms:,.0f} ms"

    @property
    def outcomes_per_s(self) -> float:
        """Outcomes written per second, first slot to last outcome: past the worker's
        capacity for this traffic (a backlog drained), that capacity."""
        return self.outcomes / self.elapsed_s if self.elapsed_s > 0 else math.nan


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..1)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def small_events(
    phones: list[str], count: int, recipients: int, level: int, t0_ms: float,
    interval_ms: float, rng: random.Random,
) -> list[tuple[int, tuple[str, dict[str, Any]]]]:  # fmt: skip
    """(intended epoch ms, event) for `count` promotions of `recipients` random subscribers.

    Every event is a campaign of its own (own template parameter and campaign id), so
    no DUPLICATE; caps and quiet hours apply as to any promotion.
    """
    out = []
    for i in range(count):
        at = round(t0_ms + i * interval_ms)
        event = {
            "event_id": f"bench-latency-{level}-{i:07d}", "business_id": RETAILER,
            "kind": "PROMOTION", "occurred_at": at, "expires_at": at + 48 * HOUR_MS,
            "recipients": rng.sample(phones, recipients), "entity_id": None,
            "entity_version": None, "tags": ["electronics", "home"], "offer": None,
            "template": {"name": "flash_sale", "language": "en", "params": [f"L{level}-{i}"]},
            "payload": {"Promotion": {"campaign_id": f"bench-latency-{level}-{i}"}},
        }  # fmt: skip
        out.append((at, (topics.BUSINESS_EVENTS, event)))
    return out


def send_on_schedule(producer: Any, schedule: list[tuple[int, Encoded]]) -> float:
    """Send each record at its slot (epoch ms), never waiting on the worker; flush.

    Returns the largest lateness of a send after its slot, in ms.
    """
    lag = 0.0
    for at_ms, (topic, key, value) in schedule:
        delay = at_ms / 1000 - time.time()
        if delay > 0:
            time.sleep(delay)
        else:
            lag = max(lag, -delay * 1000)
        producer.send(topic, key=key, value=value)
    producer.flush()
    return lag


def day_events(
    day: DayTraffic, level: int, t0_ms: float, decisions_per_s: float, seconds: float
) -> tuple[list[tuple[int, tuple[str, dict[str, Any]]]], int]:
    """(intended epoch ms, event) for the simulated day's events re-offered open loop,
    and the outcomes they make (as their originals do):
    each event's slot is when the decisions before it are due at `decisions_per_s`, so
    a 1,000-recipient promotion is followed by a gap of a thousand decisions. The day
    starts over if `seconds` outlast it.

    Copies under new ids: new event ids, entity versions above those of every earlier
    lap and level (levels are numbered in the order they run) and a tag on the last
    template parameter, so the worker takes none for an event it already decided
    (DUPLICATE, SUPERSEDED). Their times move with their slot, so the day's
    already-expired event is expired again.
    """
    if not day.events:
        raise ValueError("the simulated day has no business events to offer")
    out: list[tuple[int, tuple[str, dict[str, Any]]]] = []
    due_ms, end_ms, outcomes, tag = 0.0, seconds * 1000, 0, f"day{level}"
    for lap in range(LAPS_PER_LEVEL):
        version_offset = (level * LAPS_PER_LEVEL + lap + 1) * ENTITY_VERSION_STEP
        for i, ((topic, original), made) in enumerate(zip(day.events, day.outcomes, strict=True)):
            if due_ms >= end_ms:
                return out, outcomes
            at = round(t0_ms + due_ms)
            event = copy.deepcopy(original)
            shift = at - day.start_ms
            outcomes += made
            # One id per slot: the day sends a few events twice under one id.
            event["event_id"] = f"{original['event_id']}-{tag}-{lap}-{i}"
            for field in ("occurred_at", "expires_at"):
                if event.get(field) is not None:
                    event[field] += shift
            if event.get("entity_version") is not None:
                event["entity_version"] += version_offset
            params = event.get("template", {}).get("params")
            if params:
                params[-1] = f"{params[-1]} {tag}-{lap}"
            out.append((at, (topic, event)))
            due_ms += max(1, len(event.get("recipients") or ())) / decisions_per_s * 1000
    raise ValueError(f"a latency level of over {LAPS_PER_LEVEL} simulated days")


# Entity versions of a re-offered day go up by this much a lap (the simulated day's
# own are below it), and up to LAPS_PER_LEVEL laps a level, so every copy of an entity
# comes after all the earlier ones.
ENTITY_VERSION_STEP, LAPS_PER_LEVEL = 1_000, 100


def latency_phase(run: Run) -> None:
    """The open-loop levels of each traffic, one after another, each drained before the
    next."""
    params, herald = run.params, run.herald
    if params.latency_base is not None:
        base_name, base_rate = "fixed", params.latency_base
    elif herald.mix is not None:
        base_name, base_rate = "simulated day", herald.mix.rate
    else:
        assert herald.campaign is not None
        base_name, base_rate = "campaign", herald.campaign.rate
    bench = run.bench
    assert bench.publisher is not None and bench.worker.process is not None
    cpu = CpuMeter(bench.worker.process.pid, run.broker.process.pid if run.broker.process else None)
    rng = random.Random(params.seed + 300)
    levels: list[Level] = []
    spy_out = run.workdir / "worker-latency.pyspy.txt"
    if params.profile == "py-spy":  # bench.stop() stops it if a level fails
        bench.spy = PySpy(bench.worker.process.pid, spy_out, run.workdir / "py-spy-latency.log")
    n_level = 0
    for traffic in params.latency_traffic:
        for load in params.latency_loads:
            levels.append(run_level(run, traffic, load, load * base_rate, n_level, cpu, rng))
            n_level += 1
            time.sleep(1.0)  # let the worker idle a moment between levels

    if bench.spy is not None:
        bench.spy.stop()
        bench.spy = None
        profile_levels(run, spy_out)
    run.data["latency"] = levels
    run.data["latency_base"] = (base_name, base_rate)
    run.figures["latency_base"] = base_name
    run.figures["latency_base_per_s"] = round(base_rate, 1)
    run.figures["latency_recipients_per_event"] = params.latency_recipients
    for lv in levels:
        record_level(run, lv, base_name)


def run_level(
    run: Run, traffic: str, load: float, offered: float, n_level: int, cpu: CpuMeter,
    rng: random.Random,
) -> Level:  # fmt: skip
    """Offer one traffic at `offered` decisions/s for the level's seconds; time every
    outcome from its event's slot."""
    params, bench, tail = run.params, run.bench, run.bench.tail
    assert bench.publisher is not None
    t0_ms = time.time() * 1000 + 1000  # a second to encode, then the first slot
    if traffic == "day":
        planned, expected = day_events(
            run.traffic.day, n_level, t0_ms, offered, params.latency_seconds
        )
    else:
        k = params.latency_recipients
        count = max(1, round(offered / k * params.latency_seconds))
        planned = small_events(
            run.traffic.phones, count, k, n_level, t0_ms, 1000 * k / offered, rng
        )
        expected = count * k
    enc = list(encoded([e for _, e in planned], BENCH_SECRET.encode()))
    schedule = [(at, rec) for (at, _), rec in zip(planned, enc, strict=True)]
    intended = {e["event_id"]: at for at, (_, e) in planned}
    utility = {e["event_id"] for _, (_, e) in planned if e.get("kind") != "PROMOTION"}
    base = tail.count
    tail.seen = []
    tail.track = intended
    first = time.monotonic()
    first_slot = first + (t0_ms / 1000 - time.time())
    what = f"latency, {TRAFFIC_NAMES[traffic]}, at {load:.0%}"
    gc = GcMeter([bench.sampler]).start()
    cpu.start()
    try:
        lag = send_on_schedule(bench.publisher.producer, schedule)
        t_last = tail.wait_for(
            base + expected, first, params.timeout_s, what,
            bench.worker.alive, lambda: bench.sampler.latest().outcomes,
        )  # fmt: skip
    finally:
        cpu.stop()
        tail.track = None
    gc.stop()
    seen = list(tail.seen)
    got = len(seen)
    run.checks[f"{figure_name(traffic, load)}_outcomes"] = got
    if got != expected:
        run.ok = False
        run.console.print(f"[red]{what}: {got:,} outcomes, wanted {expected:,}")
    to_record = sorted(float(ts - intended[e]) for e, ts, _, _ in seen)
    to_received = sorted(float(rx - intended[e]) for e, _, _, rx in seen)
    to_utility = sorted(float(ts - intended[e]) for e, ts, _, _ in seen if e in utility)
    types = {t for _, _, t, _ in seen}
    seconds = (max(intended.values()) - t0_ms) / 1000 if intended else 0.0
    level = Level(
        traffic, load, offered, len(planned), got, seconds, t_last - first_slot, lag,
        percentile(to_record, 0.5), percentile(to_record, 0.99),
        percentile(to_record, 0.999), to_record[-1] if to_record else math.nan,
        percentile(to_received, 0.5), percentile(to_received, 0.99),
        percentile(to_utility, 0.5), percentile(to_utility, 0.99), len(to_utility),
        types.pop() if len(types) == 1 else -1, cpu.python_s, cpu.broker_s, cpu.other_s,
        gc.spent,
    )  # fmt: skip
    run.console.print(
        f"{what} ({offered:,.0f} decisions/s, {len(planned):,} events): p50 "
        f"{level.p50_ms:,.0f} ms, p99 {level.p99_ms:,.0f} ms, p99.9 {level.p999_ms:,.0f} ms, "
        f"max {level.max_ms:,.0f} ms{level.utility}; garbage collection {level.gc.describe()}"
    )
    return level


TRAFFIC_NAMES = {"day": "the simulated day", "small": "small promotions"}


def figure_name(traffic: str, load: float) -> str:
    """`latency_50` for small promotions (the name figures had before the day was
    offered too), `latency_day_50` for the day."""
    return f"latency_{'day_' if traffic == 'day' else ''}{round(load * 100)}"


def record_level(run: Run, lv: Level, base_name: str) -> None:
    """A level's figures for results.jsonl and its row in the summary table."""
    name = figure_name(lv.traffic, lv.load)
    run.figures |= {
        f"{name}_offered_per_s": round(lv.decisions_per_s, 1),
        f"{name}_events": lv.events,
        f"{name}_outcomes": lv.outcomes,
        f"{name}_p50_ms": round(lv.p50_ms, 1),
        f"{name}_p99_ms": round(lv.p99_ms, 1),
        f"{name}_p999_ms": round(lv.p999_ms, 1),
        f"{name}_max_ms": round(lv.max_ms, 1),
        f"{name}_received_p50_ms": round(lv.received_p50_ms, 1),
        f"{name}_received_p99_ms": round(lv.received_p99_ms, 1),
        f"{name}_publish_lag_max_ms": round(lv.publish_lag_max_ms, 1),
        f"{name}_elapsed_s": round(lv.elapsed_s, 2),
        f"{name}_timestamp_type": lv.timestamp_type,
        f"{name}_outcomes_per_s": round(lv.outcomes_per_s, 1),
        f"{name}_worker_cpu_s": round(lv.worker_cpu_s, 2),
        f"{name}_broker_cpu_s": round(lv.broker_cpu_s, 2),
        f"{name}_other_cpu_s": round(lv.other_cpu_s, 2),
    } | lv.gc.figures(name)
    if lv.traffic == "day":
        run.figures |= {
            f"{name}_utility_outcomes": lv.utility_outcomes,
            f"{name}_utility_p50_ms": round(lv.utility_p50_ms, 1),
            f"{name}_utility_p99_ms": round(lv.utility_p99_ms, 1),
        }
        of = "the day"
    else:
        of = str(run.params.latency_recipients)
    target = ""
    if abs(lv.load - 0.5) < 1e-9:
        met = lv.p50_ms <= TARGET_P50_MS and lv.p99_ms <= TARGET_P99_MS
        target = f"p50 <= 50, p99 <= 250 ms: {'met' if met else 'MISSED'}"
    run.rows.append((
        f"2. latency publish -> outcome, {TRAFFIC_NAMES[lv.traffic]}, at {lv.load:.0%} of "
        f"the {base_name} rate",
        f"{lv.outcomes:,} outcomes of {lv.events:,} events of {of}, "
        f"{lv.decisions_per_s:,.0f}/s for {lv.seconds:.0f} s",
        f"p50 {lv.p50_ms:,.0f} / p99 {lv.p99_ms:,.0f} / p99.9 {lv.p999_ms:,.0f} ms{lv.utility}",
        # How busy the load kept the worker and the broker, and what came out: past the
        # worker's capacity for the traffic, the written rate is that capacity.
        f"{lv.outcomes_per_s:,.0f} written/s; worker {_core(lv.worker_cpu_s, lv.elapsed_s)}"
        f", broker {_core(lv.broker_cpu_s, lv.elapsed_s)}",
        target, _core(lv.other_cpu_s, lv.elapsed_s),
    ))  # fmt: skip


def profile_levels(run: Run, path: Path) -> None:
    """Print and keep where the worker's time went during the latency levels (py-spy)."""
    if not path.exists():
        run.console.print(f"[red]py-spy wrote no profile of the latency levels ({path})")
        return
    rows, busy = summarise_pyspy(path)
    inclusive = inclusive_pyspy(path)
    table = Table(title=f"the worker during the latency levels: py-spy, {busy:,} busy samples")
    table.add_column("bucket / innermost frame (self) or function (inclusive)")
    table.add_column("share", justify="right")
    for label, share in rows:
        table.add_row(label, f"{share:.1f}%")
    for label, share in inclusive.items():
        table.add_row(f"inclusive: {label}", f"{share:.1f}%")
    run.console.print(table)
    run.data["latency_profile"] = {
        "busy_samples": busy,
        "self": {k: round(v, 1) for k, v in rows if not k.startswith("  leaf")},
        "inclusive": {k: round(v, 1) for k, v in inclusive.items()},
    }


def _core(cpu_s: float, seconds: float) -> str:
    return f"{cpu_s / seconds:.0%}" if seconds > 0 else ""


def targets_phase(run: Run) -> None:
    """Rows for the figures the throughput run already measured, with issue 5's targets."""
    c = run.ceiling.rate
    h = run.herald
    for n, label, phase in (
        ("1.", "recipient decisions, simulated day", h.mix),
        ("1.", "recipient decisions, campaign", h.campaign),
        ("4.", "signal and link updates applied", h.setup),
    ):
        if phase is None:
            continue
        ratio = phase.rate / c
        run.rows.append((
            f"{n} {label}", f"{phase.count:,} in {phase.seconds:.1f} s",
            f"{phase.rate:,.0f}/s", f"{ratio:.1%} of ceiling",
            f">= 50% of ceiling: {'met' if ratio >= 0.5 else 'MISSED'}",
            _core(phase.other_cpu_s, phase.seconds),
        ))  # fmt: skip
    if h.campaign is not None:
        cp, events = h.campaign, len(run.traffic.campaign)
        run.rows.append((
            "3. fan-out: first publish -> last outcome", f"{cp.count:,} recipients in "
            f"{events:,} events of {run.params.campaign_size:,}", f"{cp.seconds:.2f} s",
            "", f"<= 5 s: {'met' if cp.seconds <= 5 else 'MISSED'}" if cp.count == 100_000
            else "(target is for 100,000)", _core(cp.other_cpu_s, cp.seconds),
        ))  # fmt: skip
        run.figures["fanout_recipients"] = cp.count
        run.figures["fanout_seconds"] = round(cp.seconds, 3)

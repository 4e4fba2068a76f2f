"""`make bench`: Herald's throughput next to a hand-written Kafka ceiling, on one broker.

One run starts one embedded broker with Herald's topics, then measures:

1. the ceiling: a plain aiokafka consume -> trivial transform -> produce loop over
   pre-loaded, Delivery-sized records (what the transport alone allows in one Python
   process on this machine);
2. Herald: a real `herald worker` subprocess, fed the simulator's account links and
   consent signals, a simulated day of mixed business events, then a promotion campaign
   fanning out to `--recipients` recipients, each timed from the first record published
   to the worker's own /metrics showing the last of them done.

It prints a table (each figure, the ceiling, Herald/ceiling, the machine), appends one
JSON line to bench/results/results.jsonl and stops everything it started, also on
error or Ctrl-C. See bench/README.md for what each figure means and the latest results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pipeline import topics
from pipeline.broker import EmbeddedBroker, free_port
from pipeline.codec import HEADER_LENGTH, default_registry
from pipeline.demo import Progress, outcomes_per_event, scrape
from pipeline.domain.models import HOUR_MS
from pipeline.policy import DEFAULT_POLICY_FILE, load_policy
from pipeline.processes import stop_process
from pipeline.settings import Settings
from pipeline.simulate import RETAILER, Scenario, Traffic, build_traffic, encoded

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESULTS_FILE = RESULTS_DIR / "results.jsonl"
BENCH_SECRET = "herald-bench-secret-not-for-production"
CEILING_IN, CEILING_OUT = "bench-ceiling-in", "bench-ceiling-out"
# The default policy puts the simulator's retailer on TIER_3, 10,000 users a day. Over
# the benchmark's 20,000 subscribers, half of every campaign then stopped at the limit,
# the policy's second step, instead of going through all of it. A business that sends
# 100,000-recipient campaigns is on a tier that allows them.
BENCH_TIERS = {RETAILER: "TIER_4"}
# How often the worker's /metrics is read: once a second, a brisk Prometheus, except
# while a phase is timed by /metrics itself (FAST). Ten reads a second through a whole
# run cost the worker CPU and event-loop turns: its HTTP thread takes the GIL for each.
SAMPLE_INTERVAL_S, FAST_SAMPLE_INTERVAL_S = 1.0, 0.1
STALL_S = 30.0  # a phase fails when the worker's count has not moved for this long
# The per-subscriber records timed as "signal and link updates applied".
SUBSCRIBER_TOPICS = (topics.ACCOUNT_LINKS, topics.USER_SIGNALS)
# Worker settings a caller may set to compare runs; every other HERALD_* is ours.
WORKER_TUNABLES = ("HERALD_BATCH_SIZE", "HERALD_BATCH_WITHIN", "HERALD_FETCH_WAIT_MS")

Encoded = tuple[str, bytes, bytes]  # (topic, key, value)


# ---------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Params:
    partitions: int = 6
    ceiling_records: int = 200_000
    ceiling_batch: int = 10_000
    subscribers: int = 20_000
    recipients: int = 100_000
    campaign_size: int = 1_000
    mix: bool = True
    seed: int = 7
    quick: bool = False
    timeout_s: float = 300.0
    profile: str | None = None  # None, "py-spy" or "cprofile"
    worker_env: dict[str, str] = field(default_factory=dict)
    # The CPU the worker runs on (HERALD_CPUS; the naive app's too), None: unpinned. The
    # ceiling loop is left unpinned: pinned, it was no faster, and a ceiling at its best
    # keeps the ratios honest.
    cpu: int | None = None
    # The full suite (`python -m bench`) only:
    skip: tuple[str, ...] = ()  # phases left out: latency, two-workers, naive, plot
    latency_seconds: float = 20.0  # open-loop load per level
    latency_recipients: int = 5  # recipients per event under the open-loop load
    latency_loads: tuple[float, ...] = (0.25, 0.5, 0.75)  # shares of the sustained rate
    latency_traffic: tuple[str, ...] = ("day", "small")  # offered in turn: LATENCY_TRAFFIC
    latency_base: float | None = None  # decisions/s the loads are shares of; None: measured
    naive_recipients: int = 20_000  # the naive agent's campaign


SUITE_PHASES = ("latency", "two-workers", "naive", "plot")
LATENCY_TRAFFIC = ("day", "small")  # what bench.latency can offer


def parse_args(
    argv: Sequence[str] | None = None, suite: bool = False
) -> tuple[Params, argparse.Namespace]:
    p = argparse.ArgumentParser(
        prog="python -m bench" if suite else "python -m bench.throughput",
        description="Herald's throughput next to a plain aiokafka ceiling, on one embedded broker"
        + (", then latency, two workers, the naive agent and a plot." if suite else "."),
    )
    if suite:
        p.add_argument(
            "--skip", action="append", default=[], choices=SUITE_PHASES,
            help="leave a phase out (repeatable)",
        )  # fmt: skip
        p.add_argument("--latency-seconds", type=float, help="seconds per load level (20)")
        p.add_argument("--latency-recipients", type=int, default=5, help="recipients per event")
        p.add_argument(
            "--latency-loads", default="0.25,0.5,0.75",
            help="shares of the sustained rate to offer, comma-separated (0.25,0.5,0.75)",
        )  # fmt: skip
        p.add_argument(
            "--latency-traffic", default="day,small",
            help="what the levels offer, in turn, comma-separated: day (the simulated day's "
            "events), small (promotions of --latency-recipients)",
        )  # fmt: skip
        p.add_argument(
            "--latency-base", type=float,
            help="decisions/s the loads are shares of, instead of the day's measured rate: "
            "compares runs at the same offered load",
        )  # fmt: skip
        p.add_argument("--naive-recipients", type=int, help="the naive agent's campaign (20,000)")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke check")
    p.add_argument("--partitions", type=int, default=6, help="partitions of every topic (6)")
    p.add_argument("--ceiling-records", type=int, help="records through the ceiling (200,000)")
    p.add_argument("--ceiling-batch", type=int, default=10_000, help="getmany max_records")
    p.add_argument("--subscribers", type=int, help="subscribers pre-loaded (20,000)")
    p.add_argument("--recipients", type=int, help="recipients of the campaign (100,000)")
    p.add_argument("--campaign-size", type=int, default=1_000, help="recipients per event")
    p.add_argument("--no-mix", action="store_true", help="skip the simulated day of events")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per phase")
    p.add_argument(
        "--profile",
        choices=("py-spy", "cprofile"),
        help="profile the worker: py-spy samples the Herald phases only (py-spy must be "
        "installed); cprofile runs the whole worker under cProfile (slower: figures skewed)",
    )
    p.add_argument(
        "--no-pin", action="store_true",
        help="leave the worker unpinned (default, with two CPUs or more: on the last, "
        "with HERALD_CPUS, as a deployment gives each worker a core)",
    )  # fmt: skip
    p.add_argument("--no-record", action="store_true", help="do not append to results.jsonl")
    p.add_argument("--note", default="", help="free text stored with the result (what changed)")
    a = p.parse_args(argv)
    quick = a.quick
    params = Params(
        partitions=a.partitions,
        ceiling_records=a.ceiling_records or (20_000 if quick else 200_000),
        ceiling_batch=a.ceiling_batch,
        # Quick keeps two campaign waves, like the default's ten: a campaign reaches each
        # subscriber once per wave, and many waves over few subscribers would let one
        # batch decide the same subscriber repeatedly, cheaper than real fan-out.
        subscribers=a.subscribers or (5_000 if quick else 20_000),
        recipients=a.recipients or (10_000 if quick else 100_000),
        campaign_size=a.campaign_size,
        mix=not a.no_mix,
        seed=a.seed,
        quick=quick,
        timeout_s=a.timeout,
        profile=a.profile,
        worker_env={k: os.environ[k] for k in WORKER_TUNABLES if os.environ.get(k)},
        cpu=None if a.no_pin else pinned_cpu(),
    )
    if suite:
        params = replace(
            params,
            skip=tuple(a.skip),
            latency_seconds=a.latency_seconds or (6.0 if quick else 20.0),
            latency_recipients=a.latency_recipients,
            latency_loads=tuple(float(x) for x in a.latency_loads.split(",") if x.strip()),
            latency_traffic=tuple(x.strip() for x in a.latency_traffic.split(",") if x.strip()),
            latency_base=a.latency_base,
            naive_recipients=a.naive_recipients or (2_000 if quick else 20_000),
        )
    if min(params.partitions, params.ceiling_records, params.subscribers, params.recipients) < 1:
        p.error("sizes and --partitions must be at least 1")
    if params.latency_base is not None and params.latency_base <= 0:
        p.error("--latency-base must be a positive number of decisions/s")
    if not params.latency_traffic or set(params.latency_traffic) - set(LATENCY_TRAFFIC):
        p.error(f"--latency-traffic takes some of {', '.join(LATENCY_TRAFFIC)}")
    if not 1 <= params.campaign_size <= 10_000:
        p.error("--campaign-size must be 1..10000 (the policy's recipient limit)")
    return params, a


# ------------------------------------------------------------------------------- machine


def pinned_cpu() -> int | None:
    """Return the CPU the worker gets to itself (the last allowed), None on a single CPU."""
    if not hasattr(os, "sched_getaffinity"):
        return None  # not Linux: HERALD_CPUS cannot pin there
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[-1] if len(allowed) >= 2 else None


def machine() -> dict[str, Any]:
    """Describe the machine the figures were measured on."""
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    return {
        "nproc": usable,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpu": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }


def git_revision() -> str | None:
    """Return the checked-out commit (with '+dirty' for local changes), if in a git tree."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
            text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


# ------------------------------------------------------------------------------- ceiling


@dataclass(frozen=True)
class CeilingResult:
    records: int
    bytes_per_record: float
    preload_s: float
    seconds: float
    python_cpu_s: float  # this process, from first consumed to last acknowledged
    broker_cpu_s: float
    other_cpu_s: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def delivery_samples(count: int, seed: int) -> list[tuple[bytes, bytes]]:
    """Return (subscriber key, Avro Delivery) pairs shaped like Herald's real output."""
    codec = default_registry()
    rng = random.Random(seed)
    now = time.time_ns() // 1_000_000
    out: list[tuple[bytes, bytes]] = []
    for i in range(count):
        subscriber = f"{rng.getrandbits(256):064x}"
        record = {
            "message_id": f"m-{rng.getrandbits(128):032x}",
            "event_id": f"{RETAILER}-promotion-{rng.getrandbits(48):012x}",
            "business_id": RETAILER,
            "subscriber": subscriber,
            "wa_id": f"+62812{rng.randrange(10**8):08d}",
            "recipient_index": i % 1_000,
            "kind": "PROMOTION",
            "category": "MARKETING",
            "template": {"name": "weekend_sale", "language": "en", "params": ["20%"]},
            "entity_id": None,
            "priority": "NORMAL",
            "deliver_after": None,
            "expires_at": now + 48 * HOUR_MS,
            "decided_at": now,
            "policy_version": "p-0123456789ab",
            "rule": "consent",
            "detail": "opted in to marketing from this business",
        }
        out.append((subscriber.encode(), codec.encode("herald.v1.Delivery", record)))
    return out


async def preload(
    producer: Any, topic: str, partitions: int, records: Iterable[tuple[bytes, bytes]]
) -> None:
    """Write records fast, in whole batches round-robin over partitions (not timed)."""
    pending = []
    batch, partition = producer.create_batch(), 0
    for key, value in records:
        if batch.append(key=key, value=value, timestamp=None) is None:  # full
            pending.append(await producer.send_batch(batch, topic, partition=partition))
            batch, partition = producer.create_batch(), (partition + 1) % partitions
            batch.append(key=key, value=value, timestamp=None)
    if batch.record_count():
        pending.append(await producer.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*pending)


async def run_ceiling(broker: EmbeddedBroker, params: Params) -> CeilingResult:
    """Pre-load records, then time a consume -> transform -> produce loop over all of them."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    bootstrap = broker.bootstrap
    cpu = CpuMeter(None, broker.process.pid if broker.process else None)

    n = params.ceiling_records
    samples = delivery_samples(min(n, 4_096), params.seed)
    size = sum(len(k) + len(v) for k, v in samples) / len(samples)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024,
        max_request_size=8 * 1024 * 1024,
    )  # fmt: skip
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )  # fmt: skip
    consumer_started = False
    await producer.start()
    try:
        started = time.perf_counter()
        records = (samples[i % len(samples)] for i in range(n))
        await preload(producer, CEILING_IN, params.partitions, records)
        preload_s = time.perf_counter() - started

        await consumer.start()
        consumer_started = True
        tps = [TopicPartition(CEILING_IN, p) for p in range(params.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # The embedded broker reports wrong end offsets: count records, never trust them.
        consumed, first = 0, 0.0
        deadline = time.monotonic() + params.timeout_s
        while consumed < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=params.ceiling_batch)
            if not batch:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"ceiling consumed {consumed:,} of {n:,} records")
                continue
            if not first:
                first = time.perf_counter()
                cpu.start()
            pending = []
            for records in batch.values():
                for m in records:
                    key, value = m.key or b"", m.value or b""
                    # The transform: re-key and re-frame, cheap on purpose (transport only).
                    out_key = key[32:] + key[:32]
                    out_value = value[:HEADER_LENGTH] + value[HEADER_LENGTH:]
                    pending.append(await producer.send(CEILING_OUT, out_value, key=out_key))
            await asyncio.gather(*pending)
            consumed += len(pending)
        seconds = time.perf_counter() - first
        cpu.stop()
    finally:
        if consumer_started:
            await consumer.stop()
        await producer.stop()
    return CeilingResult(
        consumed, size, preload_s, seconds, cpu.python_s, cpu.broker_s, cpu.other_s
    )


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """Read an Avro zig-zag varint at `pos`; return (value, next position)."""
    shift = result = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def event_id_of(value: bytes) -> str:
    """Return the event_id of a Delivery or Suppression without decoding the whole record.

    Both schemas start with the strings message_id, event_id (single-object encoding:
    a 10-byte header, then the body); "" for anything else.
    """
    try:
        n, pos = _varint(value, HEADER_LENGTH)
        n, pos = _varint(value, pos + n)
        return value[pos : pos + n].decode()
    except (IndexError, UnicodeDecodeError):
        return ""


class OutputTail:
    """Counts the records landing on deliveries and suppressions, live, from the beginning.

    No consumer group and no end offsets (the embedded broker's are wrong): it reads
    both topics from the start in its own thread and event loop, and notes the time of
    every fetch that brought records, so a phase ends when its outcomes are *written*
    (the worker's /metrics count them when decided, up to a whole batch earlier).
    """

    def __init__(self, bootstrap: str, partitions: int) -> None:
        self.bootstrap, self.partitions = bootstrap, partitions
        self.count = 0
        self.samples: list[tuple[float, int]] = []  # (monotonic time, count so far)
        # Latency tracking (bench.latency): event id -> intended publish time (epoch ms);
        # while set, each output of a tracked event adds (event id, record timestamp ms,
        # timestamp type, epoch ms when this tail received it) to `seen`.
        self.track: dict[str, int] | None = None
        self.seen: list[tuple[str, int, int, int]] = []
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="output-tail", daemon=True)

    def start(self) -> OutputTail:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by wait_for
            self.error = exc

    async def _run(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=100,
            fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=8 * 1024 * 1024,
        )  # fmt: skip
        await consumer.start()
        try:
            tps = [
                TopicPartition(t, p)
                for t in (topics.DELIVERIES, topics.SUPPRESSIONS)
                for p in range(self.partitions)
            ]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=100, max_records=50_000)
                n = sum(len(records) for records in batch.values())
                if n and self.track is not None:
                    self._note(batch.values())
                if n:
                    with self._cond:
                        self.count += n
                        self.samples.append((time.monotonic(), self.count))
                        self._cond.notify_all()
        finally:
            await consumer.stop()

    def _note(self, batches: Iterable[Any]) -> None:
        track, received = self.track or {}, time.time_ns() // 1_000_000
        for records in batches:
            for m in records:
                event_id = event_id_of(m.value or b"")
                if event_id in track:
                    self.seen.append((event_id, m.timestamp, m.timestamp_type, received))

    def wait_for(self, target: int, since: float, timeout: float, what: str,
                 alive: Callable[[], bool], decided: Callable[[], int]) -> float:  # fmt: skip
        """Return when the count first reached `target` (at or after `since`).

        Raises TimeoutError after `timeout` s, or once neither the written count nor the
        worker's `decided` count has moved for STALL_S (a batch is written only once all
        of it is decided, so outputs alone can pause for a long batch).
        """
        deadline = time.monotonic() + timeout
        last_change, last_decided = time.monotonic(), decided()
        seen = 0
        with self._cond:
            while True:
                for t, count in self.samples[seen:]:
                    if count >= target:
                        return max(t, since)
                    last_change = max(last_change, t)
                seen = len(self.samples)
                if decided() != last_decided:
                    last_decided, last_change = decided(), time.monotonic()
                if self.error is not None:
                    raise RuntimeError(f"the output tail failed: {self.error!r}")
                if not alive():
                    raise RuntimeError(f"the worker exited while waiting for {what}")
                now = time.monotonic()
                if now > deadline or now - last_change > STALL_S:
                    why = "timed out" if now > deadline else f"no progress for {STALL_S:.0f} s"
                    raise TimeoutError(
                        f"{why} waiting for {what}: {self.count:,} outputs written, "
                        f"wanted {target:,}"
                    )
                self._cond.wait(0.5)


# ------------------------------------------------------------------------ Herald traffic


def campaign(
    phones: Sequence[str], total: int, size: int, rng: random.Random, now: int, tag: str = ""
) -> list[tuple[str, dict[str, Any]]]:
    """Promotion events of `size` recipients each, `total` recipients in all.

    Each wave covers every subscriber once, in a new order, as a campaign of its own
    (own template parameter, so no DUPLICATE across waves); later waves repeat it, the
    way a retailer runs one campaign after another to the same audience. `tag` tells
    the campaigns of one run apart (event ids, template parameter, campaign id).
    """
    out: list[tuple[str, dict[str, Any]]] = []
    left, wave = total, 0
    while left > 0:
        order = rng.sample(list(phones), len(phones))
        for i in range(0, len(order), size):
            chunk = order[i : i + size][:left]
            out.append((topics.BUSINESS_EVENTS, {
                "event_id": f"bench-{RETAILER}{tag}-w{wave}-{len(out):06d}",
                "business_id": RETAILER, "kind": "PROMOTION", "occurred_at": now,
                "expires_at": now + 48 * HOUR_MS, "recipients": chunk, "entity_id": None,
                "entity_version": None, "tags": ["electronics", "home"],
                "offer": {"description": f"{10 + wave}% off headphones", "code": f"HEAR{wave}",
                          "discount_percent": 10 + wave, "valid_until": now + 48 * HOUR_MS},
                "template": {"name": "weekend_sale", "language": "en",
                             "params": [f"{10 + wave}%{tag}"]},
                "payload": {"Promotion": {"campaign_id": f"bench{tag}-wave-{wave}"}},
            }))  # fmt: skip
            left -= len(chunk)
            if left == 0:
                break
        wave += 1
    return out


def warmup_traffic(now: int) -> list[tuple[str, dict[str, Any]]]:
    """One subscriber, linked and opted in, and one event to them: proves the worker is up."""
    phone = "+34699999999"
    return [
        (topics.ACCOUNT_LINKS, {
            "phone": phone, "status": "ACTIVE", "locale": "es_ES", "timezone": None,
            "country": "ES", "interests": ["books"], "linked_accounts": {},
            "updated_at": now - HOUR_MS,
        }),
        (topics.USER_SIGNALS, {
            "phone": phone, "business_id": RETAILER, "kind": "OPT_IN", "scope": "ALL",
            "text": None, "source": "app", "consent_version": "2026-01",
            "occurred_at": now - HOUR_MS,
        }),
        (topics.BUSINESS_EVENTS, {
            "event_id": "bench-warmup", "business_id": RETAILER, "kind": "PROMOTION",
            "occurred_at": now, "expires_at": now + HOUR_MS, "recipients": [phone],
            "entity_id": None, "entity_version": None, "tags": [], "offer": None,
            "payload": None, "template": {"name": "warmup", "language": "en", "params": []},
        }),
    ]  # fmt: skip


@dataclass(frozen=True)
class DayTraffic:
    """The simulated day's business events as JSON, interleaved, for the latency levels
    to re-offer."""

    events: list[tuple[str, dict[str, Any]]]
    start_ms: int  # the day's "now": its events' times are relative to it
    outcomes: list[int]  # each event's outcomes (0: a dead letter)


@dataclass
class HeraldTraffic:
    setup: list[Encoded]
    setup_counts: Counter[str]
    mix: list[Encoded]
    mix_outcomes: int
    mix_invalid: int  # events the simulator makes invalid on purpose: dead letters
    campaign: list[Encoded]
    campaign_recipients: int
    encode_s: float
    phones: list[str] = field(default_factory=list)  # the subscribers, linked and signalled
    day: DayTraffic = field(default_factory=lambda: DayTraffic([], 0, []))


def interleaved(
    events: list[tuple[str, dict[str, Any]]], rng: random.Random
) -> list[tuple[str, dict[str, Any]]]:
    """The events in a seeded random order that keeps the order of each entity's events
    (a flight's, a parcel's) and of each event id's: a day as it would arrive, not as the
    simulator builds it, kind after kind (passcodes last)."""
    keys = [rng.random() for _ in events]
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, (_, e) in enumerate(events):
        entity = e.get("entity_id")
        group = ("entity", e["business_id"], entity) if entity else ("id", e["event_id"])
        groups.setdefault(group, []).append(i)
    for members in groups.values():  # the group's keys, handed out in its own order
        for i, key in zip(members, sorted(keys[i] for i in members), strict=True):
            keys[i] = key
    return [events[i] for i in sorted(range(len(events)), key=keys.__getitem__)]


def invalid_events(events: list[tuple[str, dict[str, Any]]], secret: bytes) -> int:
    """Count the business events Herald must dead-letter as invalid (as the demo does)."""
    from pipeline.domain import InvalidEvent, validate_event
    from pipeline.policy import default_policy
    from pipeline.streams.records import event_from_wire

    codec, policy = default_registry(), default_policy()
    invalid = 0
    for topic, _key, value in encoded(events, secret):
        if topic != topics.BUSINESS_EVENTS:
            continue
        event = event_from_wire(codec.decode("herald.v1.BusinessEvent", value))
        try:
            validate_event(event, policy, event.occurred_at)
        except InvalidEvent:
            invalid += 1
    return invalid


def prepare_traffic(params: Params, secret: bytes) -> HeraldTraffic:
    """Build and encode everything Herald is fed, before anything is timed."""
    started = time.perf_counter()
    now = time.time_ns() // 1_000_000
    traffic: Traffic = build_traffic(
        Scenario(seed=params.seed, subscribers=params.subscribers, start_ms=now)
    )
    setup = list(encoded(traffic.setup, secret))
    phones = [obj["phone"] for t, obj in traffic.setup if t == topics.ACCOUNT_LINKS]
    mix = list(encoded(traffic.events, secret)) if params.mix else []
    day = interleaved(
        [(t, obj) for t, obj in traffic.events if t == topics.BUSINESS_EVENTS],
        random.Random(params.seed + 200),
    )
    day_outcomes = outcomes_per_event(day, secret)  # the same events as the mix's, reordered
    mix_outcomes = sum(day_outcomes) if params.mix else 0
    mix_invalid = invalid_events(traffic.events, secret) if params.mix else 0
    rng = random.Random(params.seed + 100)
    events = campaign(phones, params.recipients, params.campaign_size, rng, now)
    recipients = sum(len(obj["recipients"]) for _, obj in events)
    return HeraldTraffic(
        setup=setup,
        setup_counts=Counter(t for t, _, _ in setup),
        mix=mix,
        mix_outcomes=mix_outcomes,
        mix_invalid=mix_invalid,
        campaign=list(encoded(events, secret)),
        campaign_recipients=recipients,
        encode_s=time.perf_counter() - started,
        phones=phones,
        day=DayTraffic(day, now, day_outcomes),
    )


# -------------------------------------------------------------------- worker and metrics


class Worker:
    """A `herald worker` subprocess in its own session, stopped in order by `stop`."""

    def __init__(self, env: dict[str, str], log_path: Path, profile_out: Path | None) -> None:
        self.metrics_port = free_port()
        self.env = env
        self.log_path = log_path
        self.profile_out = profile_out
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> Worker:
        cmd = [sys.executable]
        if self.profile_out is not None:
            cmd += ["-m", "cProfile", "-o", str(self.profile_out)]
        cmd += ["-m", "pipeline.cli", "worker", "--metrics-port", str(self.metrics_port)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        stop_process(self.process)


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds a process (all its threads) has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0  # gone, or not Linux: CPU columns then read 0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float:
    """Return the CPU seconds every process on the machine has used (all cores, /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used between `start` and `stop`: the Python side under test (the worker,
    or this process for the ceiling), the broker, and everything else on the machine
    (this script's publisher and sampler, and whatever else runs: other people's tests)."""

    def __init__(self, python_pid: int | None, broker_pid: int | None) -> None:
        self.python_pid, self.broker_pid = python_pid, broker_pid
        self._start = (0.0, 0.0, 0.0)
        self.python_s = self.broker_s = self.other_s = 0.0

    def _read(self) -> tuple[float, float, float]:
        python = time.process_time() if self.python_pid is None else cpu_seconds(self.python_pid)
        broker = cpu_seconds(self.broker_pid) if self.broker_pid is not None else 0.0
        return python, broker, system_busy_seconds()

    def start(self) -> CpuMeter:
        self._start = self._read()
        return self

    def stop(self) -> CpuMeter:
        python, broker, system = (b - a for a, b in zip(self._start, self._read(), strict=True))
        self.python_s, self.broker_s = python, broker
        self.other_s = max(0.0, system - python - broker)
        return self


class Sampler:
    """Reads the worker's /metrics every SAMPLE_INTERVAL_S in a thread, keeping every sample;
    every FAST_SAMPLE_INTERVAL_S inside `fast()`.

    A sample's time is the middle of its HTTP request; a wait ends at the first sample
    that shows its count reached, so the error is at most one interval: 100 ms for the
    phases timed by /metrics (under `fast()`), a second for the rest.
    """

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.samples: list[tuple[float, Progress]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._wake = threading.Event()  # stopping, or sampling fast from now
        self._fast = 0  # how many `fast()` blocks are open
        self._thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5)

    @contextlib.contextmanager
    def fast(self) -> Iterator[None]:
        """Sample every FAST_SAMPLE_INTERVAL_S inside, starting at once."""
        self._fast += 1
        self._wake.set()
        try:
            yield
        finally:
            self._fast -= 1

    def latest(self) -> Progress:
        with self._cond:
            return self.samples[-1][1] if self.samples else Progress()

    def _run(self) -> None:
        while not self._stop.is_set():
            before = time.monotonic()
            try:
                progress: Progress | None = scrape(self.worker.url)
            except (OSError, http.client.HTTPException):
                progress = None  # not up yet, or gone: `wait_for` checks the process
            after = time.monotonic()
            if progress is not None:
                with self._cond:
                    self.samples.append(((before + after) / 2, progress))
                    self._cond.notify_all()
            interval = FAST_SAMPLE_INTERVAL_S if self._fast else SAMPLE_INTERVAL_S
            self._wake.wait(max(0.0, interval - (after - before)))
            self._wake.clear()

    def wait_for(
        self,
        done: Callable[[Progress], bool],
        since: float,
        timeout: float,
        what: str,
        moving: Callable[[Progress], int] | None = None,
        stall_s: float = STALL_S,
    ) -> tuple[float, Progress]:
        """Return the first sample taken after `since` for which `done` holds.

        Raises TimeoutError after `timeout` s, or once `moving(progress)` has not changed
        for `stall_s` s (the worker stopped making progress: an expected count is wrong,
        or records went missing), and RuntimeError if the worker exits.
        """
        deadline = time.monotonic() + timeout
        checked, last_value, last_change = 0, None, time.monotonic()
        with self._cond:
            while True:
                for i in range(checked, len(self.samples)):
                    t, progress = self.samples[i]
                    if t < since:
                        continue
                    if done(progress):
                        return t, progress
                    if moving is not None and moving(progress) != last_value:
                        last_value, last_change = moving(progress), t
                checked = len(self.samples)
                if not self.worker.alive():
                    raise RuntimeError(f"the worker exited while waiting for {what}")
                now = time.monotonic()
                if now > deadline or (moving is not None and now - last_change > stall_s):
                    last = self.samples[-1][1] if self.samples else Progress()
                    why = "timed out" if now > deadline else f"no progress for {stall_s:.0f} s"
                    raise TimeoutError(
                        f"{why} waiting for {what}: consumed {dict(last.consumed)}, "
                        f"outcomes {last.outcomes:,}"
                    )
                self._cond.wait(0.5)


class Publisher:
    """Publishes a phase's records as fast as the broker takes them, connected before timing.

    A phase's records go out as whole record batches per partition, each partition in
    order, where Kafka's default partitioner puts their keys: Herald's own BulkSender on
    an aiokafka producer with a loop thread of its own. Record by record, kafka-python
    measured itself rather than the worker (bench/README.md, Notes). `producer` is a
    kafka-python producer for the open-loop latency schedule.
    """

    def __init__(self, settings: Settings) -> None:
        from aiokafka import AIOKafkaProducer

        from pipeline.clients import producer
        from pipeline.metrics import build_metrics
        from pipeline.streams.sending import BulkSender

        self._producer = producer(settings)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def started() -> Any:  # aiokafka binds a producer to the running loop
            p = AIOKafkaProducer(
                bootstrap_servers=settings.broker, acks="all", max_batch_size=512 * 1024,
                max_request_size=8 * 1024 * 1024, **settings.security.aiokafka_config(),
            )  # fmt: skip
            await p.start()
            return p

        self._bulk = self._run(started())
        self._sender = BulkSender(lambda: self._bulk, build_metrics())
        for name in topics.INPUT_TOPICS:  # fetch metadata now, not on the first send
            self._producer.partitions_for(name)
            self._run(self._bulk.partitions_for(name))

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def producer(self) -> Any:
        return self._producer

    def send(self, records: Iterable[Encoded]) -> float:
        """Send and wait for every acknowledgement; return when the first was handed over."""
        from pipeline.streams.stages import OutRecord

        out = [OutRecord(t, k, v) for t, k, v in records]
        first = time.monotonic()
        self._run(self._sender.send(out))
        return first

    def close(self) -> None:
        self._run(self._bulk.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._producer.close()


class PySpy:
    """`py-spy record` attached to the worker for the Herald phases only."""

    def __init__(self, pid: int, out: Path, log: Path) -> None:
        self.out = out
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
             "--rate", "100", "--format", "raw", "--output", str(out)],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        time.sleep(1.0)  # attached before the first timed record

    def stop(self) -> None:
        stop_process(self.process, sig=signal.SIGINT)  # py-spy writes its output on SIGINT
        self._log.close()


# ---------------------------------------------------------------------- Herald, measured


@dataclass(frozen=True)
class GcSpent:
    """Garbage-collection pauses over a phase: seconds and collections, by generation."""

    seconds: Mapping[str, float] = field(default_factory=dict)
    collections: Mapping[str, int] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())

    def describe(self) -> str:
        """Text like "0.95 s in 3 collections (generation 0: 2, 0.21 s; 1: 1, 0.74 s)"."""
        spent = [g for g in sorted(self.collections) if self.collections[g]]
        each = "; ".join(
            f"{'generation ' if i == 0 else ''}{g}: {self.collections[g]}, {self.seconds[g]:.2f} s"
            for i, g in enumerate(spent)
        )
        n = sum(self.collections.values())
        return f"{self.total_s:.2f} s in {n} collections" + (f" ({each})" if each else "")

    def figures(self, name: str) -> dict[str, float]:
        """Flat figures for results.jsonl: `<name>_gc_s`, and per generation g
        `<name>_gc<g>_s` and `<name>_gc<g>_collections`."""
        out: dict[str, float] = {f"{name}_gc_s": round(self.total_s, 3)}
        for g in sorted(self.collections):
            out[f"{name}_gc{g}_s"] = round(self.seconds.get(g, 0.0), 3)
            out[f"{name}_gc{g}_collections"] = self.collections[g]
        return out


@dataclass
class Phase:
    """One timed phase: `count` things done in `seconds`, first publish to last done."""

    count: int
    seconds: float
    publish_s: float = 0.0
    first_s: float | None = None  # first publish to the first outcome
    python_cpu_s: float = 0.0  # the worker's CPU seconds
    broker_cpu_s: float = 0.0
    other_cpu_s: float = 0.0  # the rest of the machine: this script, other processes
    gc: GcSpent = field(default_factory=GcSpent)  # all workers' added up

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


@dataclass
class HeraldResult:
    startup_s: float = 0.0
    setup: Phase | None = None
    mix: Phase | None = None
    campaign: Phase | None = None
    final: Progress = field(default_factory=Progress)
    verified_outputs: int = 0


def outcomes_phase(
    tail: OutputTail, samplers: Sampler | Sequence[Sampler], publisher: Publisher,
    cpu: CpuMeter, records: list[Encoded], expected: int, timeout: float, what: str,
) -> Phase:  # fmt: skip
    """Publish business events; time until `expected` more outcomes are on the broker.

    With several workers (`samplers`, one per worker) their /metrics counts add up.
    """
    group = [samplers] if isinstance(samplers, Sampler) else list(samplers)

    def decided() -> int:
        return sum(s.latest().outcomes for s in group)

    def alive() -> bool:
        return all(s.worker.alive() for s in group)

    base = tail.count  # every earlier outcome has landed: the previous phase waited for it
    gc = GcMeter(group).start()
    cpu.start()
    first = publisher.send(records)
    published = time.monotonic()
    t_first = tail.wait_for(base + 1, first, timeout, what, alive, decided)
    t_last = tail.wait_for(base + expected, first, timeout, what, alive, decided)
    cpu.stop()
    gc.stop()
    return Phase(
        expected, t_last - first, published - first, t_first - first,
        cpu.python_s, cpu.broker_s, cpu.other_s, gc.spent,
    )  # fmt: skip


class GcMeter:
    """The workers' garbage-collection pauses between `start` and `stop`, added up.

    Read straight from their /metrics at both ends, not from the sampler's last sample
    (up to a second old).
    """

    def __init__(self, group: Sequence[Sampler]) -> None:
        self.group = group
        self._start = GcSpent()
        self.spent = GcSpent()

    def _read(self) -> GcSpent:
        seconds: Counter[str] = Counter()
        collections: Counter[str] = Counter()
        for p in (scrape(s.worker.url) for s in self.group):
            seconds.update(p.gc_pause_s)
            collections.update(p.gc_collections)
        return GcSpent(dict(seconds), dict(collections))

    def start(self) -> GcMeter:
        self._start = self._read()
        return self

    def stop(self) -> GcMeter:
        end, start = self._read(), self._start
        self.spent = GcSpent(
            {g: s - start.seconds.get(g, 0.0) for g, s in end.seconds.items()},
            {g: n - start.collections.get(g, 0) for g, n in end.collections.items()},
        )
        return self


def bench_policy(workdir: Path) -> Path:
    """Write the default policy with BENCH_TIERS' tiers into `workdir`; return its path."""
    text = DEFAULT_POLICY_FILE.read_text(encoding="utf-8")
    for business, tier in BENCH_TIERS.items():
        section = rf'(\[businesses\.{re.escape(business)}\]\ntier = )"\w+"'
        text, found = re.subn(section, rf'\g<1>"{tier}"', text)
        if found != 1:
            raise RuntimeError(f"policy/default.toml has no tier line for {business} to change")
    path = workdir / "policy.toml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    policy = load_policy(path)
    assert all(policy.businesses[b].tier == t for b, t in BENCH_TIERS.items()), path
    return path


class HeraldBench:
    """The Herald side of a run: a worker started early, then measured phase by phase.

    `start` launches the worker (it joins its group while the traffic is encoded and the
    ceiling runs); `measure` warms it up and times each phase; `stop` stops everything
    this object started, whatever happened.
    """

    def __init__(
        self, broker: EmbeddedBroker, params: Params, workdir: Path, console: Console
    ) -> None:
        self.broker, self.params, self.workdir, self.console = broker, params, workdir, console
        self.app_id = f"herald-bench-{uuid.uuid4().hex[:8]}"
        self.herald_env = {
            "HERALD_BROKER": broker.bootstrap,
            "HERALD_APP_ID": self.app_id,
            "HERALD_PARTITIONS": str(params.partitions),
            "HERALD_SESSION_TIMEOUT": "6",
            "HERALD_DATA_DIR": str(workdir / "data"),
            "HERALD_SECRET": BENCH_SECRET,
            "HERALD_POLICY_FILE": str(bench_policy(workdir)),
            **({"HERALD_CPUS": str(params.cpu)} if params.cpu is not None else {}),
            **params.worker_env,
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
        profile_out = workdir / "worker.prof" if params.profile == "cprofile" else None
        self.worker = Worker(env | self.herald_env, workdir / "worker.log", profile_out)
        self.sampler = Sampler(self.worker)
        self.tail = OutputTail(broker.bootstrap, params.partitions)
        self.publisher: Publisher | None = None
        self.spy: PySpy | None = None

    def start(self) -> None:
        topics.create_topics(
            self.broker.bootstrap, topics.herald_topics(self.app_id, self.params.partitions)
        )
        self.worker.start()
        self.sampler.__enter__()
        self.tail.start()

    def stop(self) -> None:
        try:
            if self.spy is not None:
                self.spy.stop()
                self.spy = None
            if self.publisher is not None:
                self.publisher.close()
                self.publisher = None
        finally:
            self.worker.stop()
            self.sampler.__exit__()
            self.tail.stop()
            write_timeline(self.sampler.samples, self.workdir / "timeline.jsonl")

    def measure(self, traffic: HeraldTraffic) -> HeraldResult:
        try:
            return self._measure(traffic)
        except BaseException:
            self.console.print(f"[red]worker log (last lines):[/]\n{self.worker.log_tail()}")
            raise

    def _measure(self, traffic: HeraldTraffic) -> HeraldResult:
        params, sampler, console = self.params, self.sampler, self.console
        assert self.worker.process is not None
        pid = self.worker.process.pid
        cpu = CpuMeter(pid, self.broker.process.pid if self.broker.process else None)
        result = HeraldResult()
        started = time.monotonic()
        publisher = self.publisher = Publisher(Settings.from_env(env=self.herald_env))
        # Warm-up: the worker has joined its group and decided one event end to end.
        now = time.time_ns() // 1_000_000
        warm = list(encoded(warmup_traffic(now), BENCH_SECRET.encode()))
        with sampler.fast():
            publisher.send(warm[:2])
            sampler.wait_for(
                lambda p: p.consumed[topics.USER_SIGNALS] >= 1, 0, params.timeout_s, "warm-up"
            )
            publisher.send(warm[2:])
            sampler.wait_for(lambda p: p.outcomes >= 1, 0, params.timeout_s, "warm-up event")
        self.tail.wait_for(
            1, 0, params.timeout_s, "the warm-up outcome", self.worker.alive, lambda: 0
        )
        result.startup_s = time.monotonic() - started
        console.print(f"worker warm after {result.startup_s:.1f} s more")
        if params.profile == "py-spy":
            self.spy = PySpy(pid, self.workdir / "worker.pyspy.txt", self.workdir / "py-spy.log")

        # Links and signals: first published to all consumed. Other setup records
        # (reference data, if the simulator has any) go too, but are not counted.
        with sampler.fast():  # no outputs to tail: timed by /metrics
            # Counted from a sample taken now, not one up to a second old.
            _, now_seen = sampler.wait_for(
                lambda p: True, time.monotonic(), params.timeout_s, "a fresh /metrics sample"
            )
            base = now_seen.consumed.copy()
            counts = {t: n for t, n in traffic.setup_counts.items() if t in SUBSCRIBER_TOPICS}
            want = {t: base[t] + n for t, n in counts.items()}
            gc = GcMeter([sampler]).start()
            cpu.start()
            first = publisher.send(traffic.setup)
            published = time.monotonic()
            t_done, _ = sampler.wait_for(
                lambda p: all(p.consumed[t] >= n for t, n in want.items()),
                first, params.timeout_s, "links and signals",
                moving=lambda p: sum(p.consumed[t] for t in want),
            )  # fmt: skip
            cpu.stop()
            gc.stop()
        n_setup = sum(counts.values())
        result.setup = Phase(
            n_setup, t_done - first, published - first, None,
            cpu.python_s, cpu.broker_s, cpu.other_s, gc.spent,
        )  # fmt: skip
        console.print(f"links and signals: {n_setup:,} in {result.setup.seconds:.1f} s")

        if traffic.mix:
            result.mix = outcomes_phase(
                self.tail, sampler, publisher, cpu, traffic.mix, traffic.mix_outcomes,
                params.timeout_s, "the simulated day's outcomes",
            )  # fmt: skip
            console.print(
                f"simulated day: {traffic.mix_outcomes:,} outcomes in {result.mix.seconds:.1f} s"
            )

        result.campaign = outcomes_phase(
            self.tail, sampler, publisher, cpu, traffic.campaign, traffic.campaign_recipients,
            params.timeout_s, "the campaign's outcomes",
        )  # fmt: skip
        console.print(
            f"campaign: {traffic.campaign_recipients:,} outcomes in {result.campaign.seconds:.1f} s"
        )
        if self.spy is not None:
            self.spy.stop()
            self.spy = None
        # Every outcome the worker counted should be on the broker: wait a little for
        # stragglers (duplicates from a retried batch would show as more, not fewer).
        deadline = time.monotonic() + 10
        result.final = scrape(self.worker.url)
        while self.tail.count < result.final.outcomes and time.monotonic() < deadline:
            time.sleep(0.2)
            result.final = scrape(self.worker.url)
        result.verified_outputs = self.tail.count
        return result


def write_timeline(samples: Sequence[tuple[float, Progress]], path: Path) -> None:
    """Keep every /metrics sample of the run (time, consumed, outcomes) for a later look."""
    with open(path, "w") as f:
        for t, p in samples:
            row = {"t": round(t, 3), "consumed": p.consumed, "outcomes": p.outcomes}
            f.write(json.dumps(row) + "\n")


# ------------------------------------------------------------------------------ profiles

# (label, substrings of a py-spy frame "function (file:line)"): each sample goes to the
# innermost frame of its stack that matches a bucket (self time, grouped).
PROFILE_BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("subscriber state JSON codec (state_codec.py + json)", ("state_codec.py",)),
    ("Avro encode/decode (codec + fastavro)", ("pipeline/codec/", "fastavro")),
    ("phone numbers (phonenumbers)", ("phonenumbers",)),
    ("Prometheus counters and histogram", ("prometheus_client",)),
    ("wire dicts <-> domain objects (records.py)", ("pipeline/streams/records.py",)),
    ("decide, consent and the rest of the pure core", ("pipeline/domain/",)),
    ("Herald's stage and agent code itself", ("pipeline/streams/", "pipeline/")),
    ("faust table (state reads, changelog writes)", ("faust/tables", "faust/stores")),
    ("aiokafka client (produce, fetch, protocol)", ("aiokafka", "kafka/")),
    ("faust / mode stream machinery", ("faust/", "mode/")),
    ("asyncio event loop", ("asyncio/", "selectors.py")),
)
METRICS_THREAD = "the /metrics endpoint thread (the bench's own scraping)"
IDLE = "waiting: in select() (mostly the consumer thread's fetch loop), or a thread pool's queue"
# py-spy's idle detection misses threads blocked in epoll: count those samples apart.
# The same for an idle thread-pool worker blocked on its queue (asyncio.to_thread's pool:
# the table-size count every 30 s): its innermost Python frame is the queue get.
IDLE_LEAVES = ("select (selectors.py", "_worker (concurrent/futures/thread.py:81)")


def _pyspy_stacks(path: Path) -> Iterator[tuple[list[str], int]]:
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack and count_text.isdigit():
            yield stack.split(";"), int(count_text)


def summarise_pyspy(path: Path, top: int = 12) -> tuple[list[tuple[str, float]], int]:
    """Return (bucket or innermost frame, % of busy samples) rows, and the busy sample count.

    Busy samples: the worker's own threads doing something, i.e. not idle in select and
    not the HTTP thread answering the bench's /metrics requests (both listed apart).
    """
    totals: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    apart: Counter[str] = Counter()
    for frames, count in _pyspy_stacks(path):
        # Idle first: the HTTP server's listening thread waits in select() too.
        if any(idle in frames[-1] for idle in IDLE_LEAVES):
            apart[IDLE] += count
            continue
        if any("socketserver.py" in f or "wsgiref" in f for f in frames):
            apart[METRICS_THREAD] += count
            continue
        label = "other (builtins, C code called from unlisted frames)"
        for frame in reversed(frames):
            hit = next((b for b, keys in PROFILE_BUCKETS if any(k in frame for k in keys)), None)
            if hit is not None:
                label = hit
                break
        totals[label] += count
        leaf[frames[-1]] += count
    busy = sum(totals.values())
    if not busy:
        return [], 0
    rows = [(label, 100.0 * n / busy) for label, n in totals.most_common()]
    rows += [(f"apart: {label}", 100.0 * n / busy) for label, n in apart.most_common()]
    rows += [(f"  leaf: {frame}", 100.0 * n / busy) for frame, n in leaf.most_common(top)]
    return rows, busy


# (label, a py-spy frame's text up to its file): `Function.qualname (path/of/file.py`,
# or a package's directory. tests/unit/test_bench_profile.py checks every one still names
# code that exists, so a rename cannot turn a row into a silent 0%.
INCLUSIVE_NEEDLES = (
    ("ingest stage (Ingest.process_in_chunks)",
     "Ingest.process_in_chunks (pipeline/streams/stages.py"),
    ("decide stage (Decide.process_in_chunks)",
     "Decide.process_in_chunks (pipeline/streams/stages.py"),
    ("  decide_batch (pure decisions)", "decide_batch (pipeline/domain/decide.py"),
    ("  Decide._candidates (candidate batches decoded)",
     "Decide._candidates (pipeline/streams/stages.py"),
    ("  Decide._delivery (delivery records)", "Decide._delivery (pipeline/streams/stages.py"),
    ("  Decide._suppression (suppression records)",
     "Decide._suppression (pipeline/streams/stages.py"),
    ("state reads (TableCache.__missing__)", "TableCache.__missing__ (pipeline/streams/app.py"),
    ("state writes (TableCache.write_back)", "TableCache.write_back (pipeline/streams/app.py"),
    ("produce (BulkSender.enqueue)", "BulkSender.enqueue (pipeline/streams/sending.py"),
    ("Avro encode", "SchemaRegistry.encode (pipeline/codec/avro.py"),
    ("Avro decode", "SchemaRegistry.decode (pipeline/codec/avro.py"),
    ("encode_state", "encode_state (pipeline/streams/state_codec.py"),
    ("decode_state", "decode_state (pipeline/streams/state_codec.py"),
    ("phonenumbers", "phonenumbers/"),
    ("prometheus_client", "prometheus_client/"),
    ("aiokafka", "aiokafka/"),
)  # fmt: skip


def inclusive_pyspy(path: Path) -> dict[str, float]:
    """Share of busy samples whose stack contains each function anywhere (inclusive time)."""
    hits: Counter[str] = Counter()
    busy = 0
    for frames, count in _pyspy_stacks(path):
        if any("socketserver.py" in f or "wsgiref" in f for f in frames) or any(
            idle in frames[-1] for idle in IDLE_LEAVES
        ):
            continue
        busy += count
        stack = ";".join(frames)
        for label, needle in INCLUSIVE_NEEDLES:
            if needle in stack:
                hits[label] += count
    return {label: 100.0 * hits[label] / busy for label, _ in INCLUSIVE_NEEDLES} if busy else {}


def summarise_cprofile(path: Path, top: int = 25) -> str:
    import io
    import pstats

    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


# -------------------------------------------------------------------------------- report


def _core(cpu_s: float, seconds: float) -> str:
    return f"{cpu_s / seconds:.0%}" if seconds > 0 else ""


def figures(ceiling: CeilingResult, herald: HeraldResult) -> dict[str, float | None]:
    """The run's figures, flat, for results.jsonl (rates per second, times in seconds)."""

    def r(x: float | None, digits: int = 1) -> float | None:
        return None if x is None else round(x, digits)

    c = ceiling.rate
    out: dict[str, float | None] = {
        "ceiling_records_per_s": r(c),
        "ceiling_seconds": r(ceiling.seconds, 3),
        "ceiling_bytes_per_record": r(ceiling.bytes_per_record),
        "ceiling_python_cpu_s": r(ceiling.python_cpu_s, 2),
        "ceiling_broker_cpu_s": r(ceiling.broker_cpu_s, 2),
        "ceiling_other_cpu_s": r(ceiling.other_cpu_s, 2),
        "warmup_s": r(herald.startup_s, 2),
    }
    phases = (("link_signal", herald.setup), ("mixed", herald.mix), ("campaign", herald.campaign))
    for name, phase in phases:
        if phase is None:
            continue
        out |= {
            f"{name}_per_s": r(phase.rate),
            f"{name}_count": phase.count,
            f"{name}_seconds": r(phase.seconds, 3),
            f"{name}_publish_s": r(phase.publish_s, 3),
            f"{name}_vs_ceiling": r(phase.rate / c, 4),
            f"{name}_worker_cpu_s": r(phase.python_cpu_s, 2),
            f"{name}_broker_cpu_s": r(phase.broker_cpu_s, 2),
            f"{name}_other_cpu_s": r(phase.other_cpu_s, 2),
        } | phase.gc.figures(name)
    if herald.campaign is not None:
        out["campaign_first_outcome_s"] = r(herald.campaign.first_s, 3)
    return out


def render(
    params: Params, mach: dict[str, Any], ceiling: CeilingResult, herald: HeraldResult,
    traffic: HeraldTraffic,
) -> Table:  # fmt: skip
    c = ceiling.rate
    table = Table(title="Herald throughput: one worker process, one embedded broker")
    for name in ("figure", "work", "seconds", "per second", "vs ceiling", "Python CPU",
                 "broker CPU", "other CPU"):  # fmt: skip
        table.add_column(name, justify="left" if name == "figure" else "right")
    table.add_row(
        "ceiling: aiokafka consume -> transform -> produce",
        f"{ceiling.records:,} records of {ceiling.bytes_per_record:.0f} B",
        f"{ceiling.seconds:.2f}", f"{c:,.0f}", "100%",
        _core(ceiling.python_cpu_s, ceiling.seconds), _core(ceiling.broker_cpu_s, ceiling.seconds),
        _core(ceiling.other_cpu_s, ceiling.seconds),
    )  # fmt: skip
    rows = (
        ("signal and link updates applied", herald.setup, "updates", 0),
        ("recipient decisions, simulated day", herald.mix, "outcomes", len(traffic.mix)),
        ("recipient decisions (campaign)", herald.campaign, "outcomes", len(traffic.campaign)),
    )
    for label, phase, unit, events in rows:
        if phase is None:
            continue
        work = f"{phase.count:,} {unit}" + (f" of {events:,} events" if events else "")
        table.add_row(
            label, work, f"{phase.seconds:.2f}", f"{phase.rate:,.0f}", f"{phase.rate / c:.1%}",
            _core(phase.python_cpu_s, phase.seconds), _core(phase.broker_cpu_s, phase.seconds),
            _core(phase.other_cpu_s, phase.seconds),
        )  # fmt: skip
    if herald.campaign is not None:
        cp = herald.campaign
        table.add_row("campaign fan-out: first publish -> last outcome", "", f"{cp.seconds:.2f}")
        table.add_row("campaign: first publish -> first outcome", "", f"{cp.first_s or 0:.2f}")
    table.caption = (
        f"{mach['nproc']} CPUs ({mach['cpu']}), {mach['implementation']} {mach['python']}, "
        f"{mach['platform']}; {params.partitions} partitions, {params.subscribers:,} "
        "subscribers. CPU as a share of one core: Python = the ceiling loop or the worker; "
        "other = this script's publisher and sampler plus anything else running."
    )
    return table


def record_result(line: dict[str, Any]) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with open(RESULTS_FILE, "a") as f:
        f.write(json.dumps(line, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------- main


@dataclass
class Run:
    """One run, handed to the full suite's phases (`extras`) while broker and worker are up.

    A phase adds flat `figures` (results.jsonl), table `rows` (figure, work, result,
    ratio, target, other CPU), `checks`, and anything the plot needs to `data`.
    """

    params: Params
    console: Console
    workdir: Path
    broker: EmbeddedBroker
    bench: HeraldBench
    traffic: HeraldTraffic
    ceiling: CeilingResult
    herald: HeraldResult
    figures: dict[str, Any] = field(default_factory=dict)
    rows: list[tuple[str, str, str, str, str, str]] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    ok: bool = True


Extra = Callable[[Run], None]


def render_suite(run: Run) -> Table:
    table = Table(title="Herald: latency, fan-out, scale-out and the naive agent (same run)")
    for name in ("figure", "work", "result", "ratio", "target", "other CPU"):
        table.add_column(name, justify="left" if name in ("figure", "work") else "right")
    for row in run.rows:
        table.add_row(*row)
    return table


def main(
    argv: Sequence[str] | None = None,
    *,
    suite: bool = False,
    extras: Sequence[tuple[str, Extra]] = (),
    after: Sequence[Callable[[Run, dict[str, Any]], None]] = (),
) -> int:
    """Run the throughput benchmark; with `suite`, then each of `extras` (name, phase)
    while the broker and worker are still up, and each of `after` once they are stopped
    (with the result line, before it is recorded)."""
    params, args = parse_args(argv, suite=suite)
    console = Console(width=None if sys.stdout.isatty() else 120)
    mach = machine()
    if params.profile == "py-spy" and not (Path(sys.executable).parent / "py-spy").exists():
        console.print("[red]--profile py-spy needs py-spy in this venv (pip install py-spy)")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    revision = git_revision()  # now: the worker runs the code as it is at the start
    console.print(f"herald bench at {revision}: {params}; logs in {workdir}")
    if mach["loadavg"][0] > 0.5:
        console.print(
            f"[yellow]load average {mach['loadavg'][0]:.2f}: something else is running, the "
            "figures will be low (see the 'other CPU' column)"
        )
    wall = time.monotonic()

    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        topics.create_topics(
            broker.bootstrap,
            [(CEILING_IN, params.partitions, {}), (CEILING_OUT, params.partitions, {})],
        )
        bench = HeraldBench(broker, params, workdir, console)
        try:
            bench.start()  # the worker joins its group while the traffic is encoded
            traffic = prepare_traffic(params, BENCH_SECRET.encode())
            console.print(
                f"encoded {sum(traffic.setup_counts.values()):,} links and signals, "
                f"{len(traffic.mix):,} mixed events, {len(traffic.campaign):,} campaign "
                f"events in {traffic.encode_s:.1f} s"
            )
            ceiling = asyncio.run(run_ceiling(broker, params))
            console.print(
                f"ceiling: {ceiling.records:,} records in {ceiling.seconds:.2f} s "
                f"(pre-load {ceiling.preload_s:.1f} s)"
            )
            herald = bench.measure(traffic)
            run = Run(params, console, workdir, broker, bench, traffic, ceiling, herald)
            for name, extra in extras:
                if name in params.skip:
                    continue
                try:
                    extra(run)
                except Exception as exc:  # one failed phase must not lose the others
                    console.print(f"[red]phase {name} failed: {exc!r}")
                    console.print(f"[red]worker log (last lines):[/]\n{bench.worker.log_tail()}")
                    run.ok = False
                    run.checks[f"{name}_error"] = repr(exc)
        finally:
            bench.stop()

    console.print(render(params, mach, ceiling, herald, traffic))
    if run.rows:
        console.print(render_suite(run))
    final = herald.final
    dead = sum(final.dead_letters.values())
    ok = herald.verified_outputs == final.outcomes and dead == traffic.mix_invalid
    console.print(
        f"outputs on deliveries + suppressions: {herald.verified_outputs:,} "
        f"(worker's count {final.outcomes:,}: {sum(final.deliveries.values()):,} delivered, "
        f"{sum(final.suppressions.values()):,} suppressed; dead letters {dead} of "
        f"{traffic.mix_invalid} expected); "
        f"whole run {time.monotonic() - wall:.0f} s"
    )
    if not ok:
        console.print("[red]outputs missing, or unexpected dead letters: figures not trustworthy")
    console.print("suppressions by reason: " + ", ".join(
        f"{r} {n:,}" for r, n in final.suppressions.most_common()))  # fmt: skip
    phases = (("updates", herald.setup), ("day", herald.mix), ("campaign", herald.campaign))
    paused = [
        f"{label} {p.gc.describe()}, {p.gc.total_s / p.seconds:.1%} of the phase"
        for label, p in phases
        if p is not None and p.seconds > 0
    ]
    console.print(
        "the worker stood still for garbage collection (its /metrics): " + "; ".join(paused)
    )

    line = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": revision,
        "machine": mach | {"loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "params": {k: v for k, v in asdict(params).items() if k != "timeout_s"},
        "note": args.note,
        "figures": figures(ceiling, herald) | run.figures,
        "check": {
            "outputs_counted": herald.verified_outputs,
            "worker_outcomes": final.outcomes,
            "dead_letters": dead,
            "dead_letters_expected": traffic.mix_invalid,
            **run.checks,
            "ok": ok and run.ok,
        },
    }
    if suite:
        line["suite"] = True
    if "latency_profile" in run.data:
        line["latency_profile"] = run.data["latency_profile"]
    for hook in after:
        try:
            hook(run, line)
        except Exception as exc:
            console.print(f"[red]{getattr(hook, '__name__', 'after')} failed: {exc!r}")
    if params.profile:
        profile_report(params, workdir, console, line)
    if not args.no_record:
        record_result(line)
        console.print(f"appended to {RESULTS_FILE}")
    if not run.ok:
        console.print("[red]a suite phase failed or missed outputs: see the checks above")
    return 0 if ok and run.ok else 1


def profile_report(params: Params, workdir: Path, console: Console, line: dict[str, Any]) -> None:
    if params.profile == "py-spy":
        path = workdir / "worker.pyspy.txt"
        if not path.exists():
            console.print(f"[red]py-spy wrote no profile; see {workdir / 'py-spy.log'}")
            return
        rows, busy = summarise_pyspy(path)
        table = Table(title=f"where the worker's busy time goes: py-spy, {busy:,} samples at "
                      f"100 Hz, self time grouped ({path})")  # fmt: skip
        table.add_column("bucket / innermost frame")
        table.add_column("share", justify="right")
        for label, share in rows:
            table.add_row(label, f"{share:.1f}%")
        console.print(table)
        inclusive = inclusive_pyspy(path)
        table = Table(title="inclusive time: share of busy samples with it on the stack")
        table.add_column("function")
        table.add_column("share", justify="right")
        for needle, share in inclusive.items():
            table.add_row(needle, f"{share:.1f}%")
        console.print(table)
        line["profile"] = {
            "tool": "py-spy",
            "busy_samples": busy,
            "self": {k: round(v, 1) for k, v in rows if not k.startswith("  leaf")},
            "inclusive": {k: round(v, 1) for k, v in inclusive.items()},
        }
    else:
        path = workdir / "worker.prof"
        if path.exists():
            console.print(summarise_cprofile(path))
        line["profile"] = {"tool": "cprofile", "path": str(path)}


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: every `finally` stops its process


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: broker and worker stopped", file=sys.stderr)
        sys.exit(130)

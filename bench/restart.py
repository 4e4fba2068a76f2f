"""Restart-to-ready with a million subscribers' state, and resident memory, for both stores.

`python -m bench.restart` (not part of `make bench`: it takes minutes) starts its own
embedded broker and:

1. writes `--subscribers` subscriber states (default 1,000,000) straight to the
   subscriber table's changelog, `{app_id}-subscribers-changelog`, the way the worker
   writes them: key = the subscriber key (HMAC of the E.164 number), value =
   `state_codec.encode_state(state)`, partition = the key's default partition. Each
   state holds a linked account (interests, locale), consent to two businesses and
   one remembered past outcome with its sent fingerprint: a subscriber who has been
   messaged once. Not timed (the pre-load time is printed);
2. memory store (`HERALD_STORE=memory`): starts a worker and times process start ->
   `/readyz` 200 (partitions assigned, the table recovered, reference data loaded,
   broker answering), then reads its VmRSS (and peak VmHWM) from /proc;
3. RocksDB store (`HERALD_STORE=rocksdb`): a first start recovers the whole changelog
   into its local store (timed too: a new machine); it is stopped, and the restart
   of the same worker with its local store is timed the same way, with its RSS.

After every start, one promotion to the last-written subscriber of each partition (the
tail of a changelog is what an unguarded recovery on the embedded broker drops) must
come back with outcomes that know the subscriber (no NO_ACCOUNT / NO_CONSENT): the state
really was recovered. Results are appended to bench/results/results.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.throughput import (
    BENCH_SECRET,
    OutputTail,
    Publisher,
    PySpy,
    Worker,
    _interrupted,
    git_revision,
    machine,
    record_result,
    summarise_pyspy,
)
from pipeline import topics
from pipeline.broker import EmbeddedBroker
from pipeline.domain.keys import subscriber_key, wa_id
from pipeline.domain.models import (
    HOUR_MS,
    Account,
    AccountStatus,
    Consent,
    PastOutcome,
    Reason,
    SubscriberState,
)
from pipeline.simulate import RETAILER, encoded
from pipeline.streams.stages import partition_for
from pipeline.streams.state_codec import encode_state

TARGET_READY_S = 30.0
TARGET_GIB_PER_MILLION = 1.0


def state_for(e164: str, i: int, now: int) -> SubscriberState:
    """A subscriber linked, opted in to two businesses, messaged once."""
    return SubscriberState(
        account=Account(
            wa_id(e164), AccountStatus.ACTIVE, "id_ID", "ID", now - 30 * 24 * HOUR_MS,
            "Asia/Jakarta", ("electronics", "home", "travel"),
        ),
        consents=MappingProxyType({
            RETAILER: Consent(True, True, False, now - 20 * 24 * HOUR_MS),
            "garuda-air": Consent(True, None, False, now - 10 * 24 * HOUR_MS),
        }),
        outcomes=MappingProxyType({
            f"garuda-air-flight-{i % 5000:05d}-v1": PastOutcome(
                True, "consent", "opted in to utility messages from this business",
                now - 3 * 24 * HOUR_MS, "p-0123456789ab",
            ),
        }),
        sent=MappingProxyType({f"{i:032x}": (f"garuda-air-flight-{i % 5000:05d}-v1",
                                             now - 3 * 24 * HOUR_MS)}),
    )  # fmt: skip


def phone(i: int) -> str:
    return f"+62812{i:08d}"


async def preload_states(bootstrap: str, changelog: str, count: int, partitions: int,
                         secret: bytes) -> tuple[dict[int, str], int]:  # fmt: skip
    """Write `count` states to the changelog in whole batches; return the last phone
    written to each partition and the bytes written."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
    )  # fmt: skip
    await producer.start()
    now = time.time_ns() // 1_000_000
    batches = [producer.create_batch() for _ in range(partitions)]
    last: dict[int, str] = {}
    pending: list[Any] = []
    written = 0
    try:
        for i in range(count):
            e164 = phone(i)
            key = subscriber_key(e164, secret)
            value = encode_state(state_for(e164, i, now))
            p = partition_for(key, partitions)
            k = key.encode()
            written += len(k) + len(value)
            if batches[p].append(key=k, value=value, timestamp=None) is None:  # full
                pending.append(await producer.send_batch(batches[p], changelog, partition=p))
                batches[p] = producer.create_batch()
                batches[p].append(key=k, value=value, timestamp=None)
            last[p] = e164
            if len(pending) >= 64:
                await asyncio.gather(*pending)
                pending = []
        for p, batch in enumerate(batches):
            if batch.record_count():
                pending.append(await producer.send_batch(batch, changelog, partition=p))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return last, written


def readyz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def memory_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


@dataclass
class Start:
    store: str
    kind: str  # "fresh" (whole changelog) or "restart" (local store kept)
    ready_s: float
    rss_kib: int
    hwm_kib: int
    checked: int  # check outcomes that knew their subscriber


def start_and_time(
    env: dict[str, str], log: Path, timeout: float, profile: Path | None = None
) -> tuple[Worker, float]:
    """Start a worker; return it and the seconds to /readyz 200. With `profile`, py-spy
    samples it from just after the start to ready (raw stacks written there)."""
    worker = Worker(env, log, None)
    started = time.monotonic()
    worker.start()
    spy = None
    try:
        if profile is not None:
            assert worker.process is not None
            spy = PySpy(worker.process.pid, profile, profile.with_suffix(".log"))
        while not readyz(worker.metrics_port):
            if not worker.alive():
                raise RuntimeError(f"the worker exited before ready:\n{worker.log_tail()}")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"not ready after {timeout:.0f} s:\n{worker.log_tail()}")
            time.sleep(0.05)
        ready_s = time.monotonic() - started
    except BaseException:
        worker.stop()
        raise
    finally:
        if spy is not None:
            spy.stop()
    return worker, ready_s


def check_state(publisher: Publisher, tail: OutputTail, worker: Worker, phones: list[str],
                tag: str, timeout: float) -> int:  # fmt: skip
    """Send one promotion to `phones`; return how many outcomes knew their subscriber.

    The worker is fresh, so its /metrics counts only this check (and any earlier check
    it replays): an outcome for a subscriber whose state was lost says NO_ACCOUNT or
    NO_CONSENT.
    """
    from pipeline.demo import scrape

    now = time.time_ns() // 1_000_000
    event_id = f"bench-restart-{tag}"
    event = {
        "event_id": event_id, "business_id": RETAILER, "kind": "PROMOTION",
        "occurred_at": now, "expires_at": now + 48 * HOUR_MS, "recipients": phones,
        "entity_id": None, "entity_version": None, "tags": ["electronics"], "offer": None,
        "template": {"name": "restart_check", "language": "en", "params": [tag]},
        "payload": {"Promotion": {"campaign_id": event_id}},
    }  # fmt: skip
    tail.seen, tail.track = [], {event_id: now}
    publisher.send(encoded([(topics.BUSINESS_EVENTS, event)], BENCH_SECRET.encode()))
    deadline = time.monotonic() + timeout
    while len(tail.seen) < len(phones):
        if time.monotonic() > deadline or not worker.alive():
            break
        time.sleep(0.05)
    tail.track = None
    unknown = (Reason.NO_ACCOUNT.value, Reason.NO_CONSENT.value)
    bad = sum(scrape(worker.url).suppressions[r] for r in unknown)
    return len(tail.seen) - bad


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.restart", description=__doc__.split("\n")[0])
    p.add_argument("--subscribers", type=int, default=1_000_000)
    p.add_argument("--quick", action="store_true", help="100,000 subscribers")
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--stores", default="memory,rocksdb", help="memory,rocksdb (both)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per start")
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--note", default="")
    p.add_argument(
        "--profile", action="store_true",
        help="py-spy each start until ready (py-spy in the venv; slows the start a little)",
    )  # fmt: skip
    a = p.parse_args(argv)
    n = 100_000 if a.quick and a.subscribers == 1_000_000 else a.subscribers
    stores = [s for s in a.stores.split(",") if s]
    console = Console(width=None if sys.stdout.isatty() else 120)
    workdir = Path(tempfile.mkdtemp(prefix="herald-restart-"))
    revision, mach = git_revision(), machine()
    console.print(
        f"restart bench at {revision}: {n:,} subscribers, stores {stores}; logs in {workdir}"
    )
    secret = BENCH_SECRET.encode()
    starts: list[Start] = []
    wall = time.monotonic()
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        app_id = f"herald-restart-{uuid.uuid4().hex[:8]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")} | {
            "HERALD_BROKER": broker.bootstrap, "HERALD_APP_ID": app_id,
            "HERALD_PARTITIONS": str(a.partitions), "HERALD_SESSION_TIMEOUT": "6",
            "HERALD_SECRET": BENCH_SECRET,
        }  # fmt: skip
        changelog = f"{app_id}-subscribers-changelog"
        topics.create_topics(
            broker.bootstrap,
            [*topics.herald_topics(app_id, a.partitions),
             (changelog, a.partitions, topics.COMPACTED)],
        )  # fmt: skip
        # An empty worker first (the changelog is still empty): fixed start-up time and
        # memory, to tell the state's share apart.
        empty_env = env | {"HERALD_DATA_DIR": str(workdir / "data-empty")}
        worker, empty_ready_s = start_and_time(empty_env, workdir / "worker-empty.log", a.timeout)
        try:
            time.sleep(1.0)
            empty_mem = memory_kib(worker.process.pid)  # type: ignore[union-attr]
        finally:
            worker.stop()
        console.print(
            f"empty worker: ready in {empty_ready_s:.1f} s, "
            f"RSS {empty_mem['VmRSS'] / 1024:,.0f} MiB"
        )
        t = time.monotonic()
        last, written = asyncio.run(
            preload_states(broker.bootstrap, changelog, n, a.partitions, secret)
        )
        console.print(
            f"pre-loaded {n:,} states ({written / n:.0f} B each with the key) in "
            f"{time.monotonic() - t:.1f} s"
        )
        check_phones = [last[p] for p in sorted(last)]
        tail = OutputTail(broker.bootstrap, a.partitions).start()
        from pipeline.settings import Settings

        publisher = Publisher(Settings.from_env(env=env))
        try:
            for store in stores:
                store_env = env | {"HERALD_STORE": store,
                                   "HERALD_DATA_DIR": str(workdir / f"data-{store}")}  # fmt: skip
                kinds = ["fresh", "restart"] if store == "rocksdb" else ["fresh"]
                for kind in kinds:
                    log = workdir / f"worker-{store}.log"
                    spy_out = workdir / f"{store}-{kind}.pyspy.txt" if a.profile else None
                    worker, ready_s = start_and_time(store_env, log, a.timeout, spy_out)
                    try:
                        time.sleep(1.0)  # settled: RSS after ready
                        mem = memory_kib(worker.process.pid)  # type: ignore[union-attr]
                        known = check_state(publisher, tail, worker, check_phones,
                                            f"{store}-{kind}", 60)  # fmt: skip
                    finally:
                        worker.stop()
                    start = Start(store, kind, ready_s, mem["VmRSS"], mem["VmHWM"], known)
                    starts.append(start)
                    console.print(
                        f"{store} {kind}: ready in {ready_s:.1f} s, RSS "
                        f"{mem['VmRSS'] / 1024:,.0f} MiB (peak {mem['VmHWM'] / 1024:,.0f}), "
                        f"state check {known}/{len(check_phones)}"
                    )
                    if spy_out is not None and spy_out.exists():
                        rows, busy = summarise_pyspy(spy_out, top=8)
                        console.print(
                            f"  py-spy, start to ready: {busy:,} busy samples ({spy_out})"
                        )
                        for label, share in rows:
                            console.print(f"    {share:5.1f}%  {label}")
        finally:
            publisher.close()
            tail.stop()

    table = Table(title=f"restart-to-ready and memory with {n:,} subscribers' state")
    for col in ("store", "start", "ready (s)", "RSS (MiB)", "peak (MiB)", "GiB per million",
                "state only", "targets", "state check"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("store", "start", "targets") else "right")
    figures: dict[str, Any] = {
        "restart_subscribers": n, "restart_state_bytes": round(written / n),
        "restart_empty_ready_s": round(empty_ready_s, 2),
        "restart_empty_rss_mib": round(empty_mem["VmRSS"] / 1024, 1),
    }  # fmt: skip
    empty_rss, empty_hwm = empty_mem["VmRSS"] / 1024, empty_mem["VmHWM"] / 1024
    table.add_row(
        "memory",
        "empty (no state)",
        f"{empty_ready_s:.1f}",
        f"{empty_rss:,.0f}",
        f"{empty_hwm:,.0f}",
    )
    ok = True
    for s in starts:
        per_m = s.rss_kib / 1024 / 1024 / (n / 1_000_000)
        state_m = (s.rss_kib - empty_mem["VmRSS"]) / 1024 / 1024 / (n / 1_000_000)
        ready_met, memory_met = s.ready_s <= TARGET_READY_S, per_m <= TARGET_GIB_PER_MILLION
        good = s.checked == len(check_phones)
        ok = ok and good
        table.add_row(
            s.store, s.kind, f"{s.ready_s:.1f}", f"{s.rss_kib / 1024:,.0f}",
            f"{s.hwm_kib / 1024:,.0f}", f"{per_m:.2f}", f"{state_m:.2f}",
            f"ready <= 30 s: {'met' if ready_met else 'MISSED'}; "
            f"<= 1 GiB/M: {'met' if memory_met else 'MISSED'}",
            f"{s.checked}/{len(check_phones)}",
        )  # fmt: skip
        name = f"restart_{s.store}_{s.kind}"
        figures |= {
            f"{name}_ready_s": round(s.ready_s, 2),
            f"{name}_rss_mib": round(s.rss_kib / 1024, 1),
            f"{name}_peak_mib": round(s.hwm_kib / 1024, 1),
            f"{name}_gib_per_million": round(per_m, 3),
            f"{name}_state_gib_per_million": round(state_m, 3),
        }
    table.caption = (
        f"{mach['nproc']} CPUs ({mach['cpu']}), {mach['implementation']} {mach['python']}; "
        f"{a.partitions} partitions; load average at the end {os.getloadavg()[0]:.2f}; "
        f"whole run {time.monotonic() - wall:.0f} s"
    )
    console.print(table)
    if not ok:
        console.print("[red]a restart lost state: the check found unknown subscribers")
    if not a.no_record:
        record_result({
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "git": revision, "kind": "restart",
            "machine": mach | {"loadavg_end": [round(x, 2) for x in os.getloadavg()]},
            "params": {"subscribers": n, "partitions": a.partitions, "stores": stores},
            "note": a.note, "figures": figures, "check": {"ok": ok},
        })  # fmt: skip
        console.print("appended to results.jsonl")
    return 0 if ok else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: broker and worker stopped", file=sys.stderr)
        sys.exit(130)

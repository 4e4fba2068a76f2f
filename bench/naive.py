"""A naive one-event-at-a-time faust application doing Herald's work, to compare with.

What a first faust version of Herald would look like: two agents that iterate
`async for value in stream` one Kafka record at a time, hand that one record to
Herald's own pure stages (`Ingest.process` / `Decide.process` with a one-record
batch), read and write subscriber state through the faust table per record (faust's
own changelog path), and send every output with `await topic.send(...)`. Same
codec, same policy, same decisions; only the shell differs. It does not follow the
reference-data topics (business suspensions, link reputation): nothing in the
benchmark's traffic depends on them.

It reads `account-links` and `user-signals` (Herald's topics, from the beginning,
in its own consumer group), business events from its own input topic, repartitions
candidates through its own topic and writes Herald's `deliveries` and
`suppressions`, where the benchmark's tail counts them.

`python -m bench.naive` runs the worker (configured by HERALD_* like Herald's, plus
BENCH_NAIVE_PROGRESS: a JSON file it rewrites with its counts every 0.2 s). The
benchmark phase (`naive_phase`) is run by `python -m bench`.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from pipeline import topics
from pipeline.processes import stop_process
from pipeline.settings import Settings
from pipeline.worker import pin_to_cpus

NAIVE_EVENTS = "bench-naive-events"
NAIVE_CANDIDATES = "bench-naive-candidates"
V = TypeVar("V")


class RecordState(MutableMapping[str, V], Generic[V]):
    """One record's view of a faust table: read through, written back when done."""

    def __init__(
        self, table: Any, decode: Callable[[bytes], V], encode: Callable[[V], bytes], empty: V
    ) -> None:
        self.table, self.decode, self.encode, self.empty = table, decode, encode, empty
        self.values: dict[str, V] = {}
        self.dirty: set[str] = set()

    def __getitem__(self, key: str) -> V:
        if key not in self.values:
            raw = self.table.get(key.encode())
            self.values[key] = self.decode(raw) if raw is not None else self.empty
        return self.values[key]

    def __setitem__(self, key: str, value: V) -> None:
        self.values[key] = value
        self.dirty.add(key)

    def __delitem__(self, key: str) -> None:
        raise NotImplementedError

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def write_back(self) -> None:
        for key in self.dirty:
            self.table[key.encode()] = self.encode(self.values[key])  # faust's changelog path


def build_app(settings: Settings, progress: Path) -> Any:
    import faust
    from faust.streams import current_event

    from pipeline.codec import default_registry
    from pipeline.domain import BusinessWindow, KeyMaker
    from pipeline.metrics import build_metrics
    from pipeline.policy import load_policy
    from pipeline.streams.app import EMPTY_STATE, wall_clock
    from pipeline.streams.stages import Decide, Ingest, InRecord
    from pipeline.streams.state_codec import decode_state, encode_state
    from pipeline.streams.window_store import decode_window, encode_window

    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.broker}",
        store="memory://",
        datadir=str(settings.data_dir),  # not the checkout: faust makes it even for memory://
        topic_partitions=settings.partitions,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_s / 6),
        consumer_auto_offset_reset="earliest",
        # Each business window is one table value here (Herald's are segmented): over
        # the benchmark's 20,000 subscribers one passes faust's 1 MB request default.
        producer_max_request_size=8 * 1024 * 1024,
        web_enabled=False,
    )
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    events_in = app.topic(NAIVE_EVENTS, **raw)
    decide_in = app.topic(NAIVE_CANDIDATES, topics.ACCOUNT_LINKS, topics.USER_SIGNALS, **raw)
    table_args: dict[str, Any] = {
        "partitions": settings.partitions, "key_type": bytes, "value_type": bytes,
    }  # fmt: skip
    subscribers = app.Table("subscribers", **table_args)
    businesses = app.Table("businesses", **table_args)
    codec, policy, metrics = default_registry(), load_policy(settings.policy_file), build_metrics()
    keys = KeyMaker(settings.subscriber_secret.reveal())
    ingest_stage = Ingest(
        codec, keys, policy, settings.partitions, NAIVE_CANDIDATES, wall_clock, metrics
    )
    decide_stage = Decide(codec, policy, NAIVE_CANDIDATES, wall_clock, metrics)
    out_topics: dict[str, Any] = {}
    consumed: Counter[str] = Counter()
    sent = [0]

    def record(value: bytes) -> InRecord:
        event = current_event()
        assert event is not None
        m = event.message
        consumed[m.topic] += 1
        return InRecord(m.topic, m.partition, m.offset, m.key, value)

    async def send_each(out: list[Any]) -> None:
        for r in out:
            topic = out_topics.get(r.topic) or out_topics.setdefault(
                r.topic, app.topic(r.topic, **raw)
            )
            await topic.send(key=r.key, value=r.value, partition=r.partition)
            sent[0] += 1

    @app.agent(events_in, name="naive-ingest")
    async def ingest(stream: Any) -> None:
        async for value in stream:
            windows = RecordState(businesses, decode_window, encode_window, BusinessWindow())
            out = ingest_stage.process([record(value)], windows)
            windows.write_back()
            await send_each(out)

    @app.agent(decide_in, name="naive-decide")
    async def decide(stream: Any) -> None:
        async for value in stream:
            states = RecordState(subscribers, decode_state, encode_state, EMPTY_STATE)
            out = decide_stage.process([record(value)], states)
            states.write_back()
            await send_each(out)

    @app.timer(0.2)
    async def write_progress() -> None:
        tmp = progress.with_suffix(".tmp")
        tmp.write_text(json.dumps({"consumed": consumed, "sent": sent[0], "t": time.time()}))
        tmp.replace(progress)

    return app


def run_worker() -> int:
    import faust

    settings = Settings.from_env()
    if settings.cpus is not None:  # pinned as Herald's worker is
        pin_to_cpus(settings.cpus)
    progress = Path(os.environ["BENCH_NAIVE_PROGRESS"])
    app = build_app(settings, progress)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
    return 0


# ------------------------------------------------------------------------ the benchmark


class NaiveWorker:
    """The naive app as a subprocess in its own session."""

    def __init__(self, env: dict[str, str], log_path: Path, progress: Path) -> None:
        self.env, self.log_path, self.progress = env, log_path, progress
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> NaiveWorker:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.naive", "worker"], stdout=log,
                stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
                cwd=Path(__file__).resolve().parent.parent,
            )  # fmt: skip
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def read(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            return dict(json.loads(self.progress.read_text()))
        return {"consumed": {}, "sent": 0}

    def stop(self) -> None:
        stop_process(self.process)


def naive_phase(run: Any) -> None:
    """Stop Herald's workers, then time the naive app on links/signals and a campaign."""
    from bench.throughput import BENCH_SECRET, STALL_S, CpuMeter, campaign, cpu_seconds
    from pipeline.simulate import encoded

    params, bench, console = run.params, run.bench, run.console
    herald_campaign = run.herald.campaign
    bench.worker.stop()  # Herald is measured: the naive app gets the machine to itself
    app_id = f"{bench.app_id}-naive"
    topics.create_topics(
        run.broker.bootstrap,
        [(NAIVE_EVENTS, params.partitions, {}), (NAIVE_CANDIDATES, params.partitions, {})],
    )
    env = bench.worker.env | {
        "HERALD_APP_ID": app_id, "HERALD_DATA_DIR": str(run.workdir / "naive-data"),
        "BENCH_NAIVE_PROGRESS": str(run.workdir / "naive-progress.json"),
    }  # fmt: skip
    naive = NaiveWorker(env, run.workdir / "naive.log", run.workdir / "naive-progress.json")
    cpu = CpuMeter(None, run.broker.process.pid if run.broker.process else None)

    def wait(done: Callable[[dict[str, Any]], bool], moving: Callable[[dict[str, Any]], int],
             what: str) -> float:  # fmt: skip
        deadline = time.monotonic() + params.timeout_s
        last, changed = -1, time.monotonic()
        while True:
            p = naive.read()
            if done(p):
                return time.monotonic()
            if moving(p) != last:
                last, changed = moving(p), time.monotonic()
            if not naive.alive():
                raise RuntimeError(f"the naive app exited while waiting for {what}")
            if time.monotonic() > deadline or time.monotonic() - changed > STALL_S:
                raise TimeoutError(f"naive app: no progress waiting for {what}: {p}")
            time.sleep(0.1)

    try:
        naive.start()
        assert naive.process is not None
        pid = naive.process.pid
        # Links and signals: everything Herald was fed (the simulator's and the warm-up's),
        # read from the beginning; timed from the first consumed to the last.
        counts = run.traffic.setup_counts
        want = {t: counts[t] + 1 for t in (topics.ACCOUNT_LINKS, topics.USER_SIGNALS)}

        def applied(p: dict[str, Any]) -> int:
            return sum(int(p["consumed"].get(t, 0)) for t in want)

        wait(lambda p: applied(p) > 0, applied, "the first link or signal")
        first, cpu0 = time.monotonic(), cpu_seconds(pid)
        t_setup = wait(lambda p: applied(p) >= sum(want.values()), applied, "links and signals")
        setup_s, setup_cpu = t_setup - first, cpu_seconds(pid) - cpu0
        n_setup = sum(want.values())
        console.print(f"naive: {n_setup:,} links and signals in {setup_s:.1f} s")

        rng = random.Random(params.seed + 400)
        now = time.time_ns() // 1_000_000
        events = campaign(
            run.traffic.phones, params.naive_recipients, params.campaign_size, rng, now,
            tag="-naive",
        )  # fmt: skip
        records = [(NAIVE_EVENTS, k, v) for _, k, v in encoded(events, BENCH_SECRET.encode())]
        expected = sum(len(e["recipients"]) for _, e in events)
        base = bench.tail.count
        cpu0 = cpu_seconds(pid)
        cpu.start()
        t0 = bench.publisher.send(records)
        t_last = bench.tail.wait_for(
            base + expected, t0, params.timeout_s, "the naive app's campaign", naive.alive,
            lambda: int(naive.read()["sent"]),
        )  # fmt: skip
        cpu.stop()
        seconds, naive_cpu = t_last - t0, cpu_seconds(pid) - cpu0
        time.sleep(1.0)  # stragglers would show as more than expected
        got = bench.tail.count - base
    finally:
        naive.stop()
    rate, setup_rate = expected / seconds, n_setup / setup_s
    run.checks["naive_outputs"] = got
    if got != expected:
        run.ok = False
        console.print(f"[red]naive app: {got:,} outputs, wanted {expected:,}")
    herald_rate = herald_campaign.rate if herald_campaign else float("nan")
    herald_setup = run.herald.setup.rate if run.herald.setup else float("nan")
    console.print(
        f"naive: {expected:,} outcomes in {seconds:.1f} s, {rate:,.0f}/s "
        f"(Herald {herald_rate / rate:.1f}x)"
    )
    other = max(0.0, cpu.other_s - naive_cpu)
    run.data["naive"] = {"rate": rate, "setup_rate": setup_rate}
    run.figures |= {
        "naive_campaign_per_s": round(rate, 1),
        "naive_campaign_count": expected,
        "naive_campaign_seconds": round(seconds, 3),
        "naive_campaign_vs_ceiling": round(rate / run.ceiling.rate, 4),
        "naive_worker_cpu_s": round(naive_cpu, 2),
        "naive_other_cpu_s": round(other, 2),
        "herald_vs_naive_campaign": round(herald_rate / rate, 2),
        "naive_link_signal_per_s": round(setup_rate, 1),
        "naive_link_signal_worker_cpu_s": round(setup_cpu, 2),
        "herald_vs_naive_link_signal": round(herald_setup / setup_rate, 2),
    }
    run.rows.append((
        "7. naive faust agent: campaign decisions", f"{expected:,} recipients in "
        f"{len(records):,} events", f"{rate:,.0f}/s",
        f"Herald {herald_rate / rate:.1f}x ({rate / run.ceiling.rate:.1%} of ceiling)", "",
        f"{other / seconds:.0%}" if seconds else "",
    ))  # fmt: skip
    run.rows.append((
        "7. naive faust agent: link and signal updates", f"{n_setup:,} updates",
        f"{setup_rate:,.0f}/s", f"Herald {herald_setup / setup_rate:.1f}x", "", "",
    ))  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        sys.argv = [sys.argv[0], "worker"]
        sys.exit(run_worker())
    print("usage: python -m bench.naive worker  (run by `python -m bench`)", file=sys.stderr)
    sys.exit(2)

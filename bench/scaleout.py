"""Two workers against one: a second `herald worker` joins the first one's group.

Once both answer /readyz (the second has its partitions and has recovered their
state; the first has finished rebalancing), a campaign of the same size as the
throughput run's is published and timed the same way (first publish to the last
outcome written). The ratio is over the one-worker campaign of the same run. On a
2-core machine shared with the broker the figure is noisy and bounded by the cores;
later campaigns also meet subscriber states that carry more past outcomes, so the
ratio leans low, not high.
"""

from __future__ import annotations

import os
import random
import time
import urllib.error
import urllib.request

from bench.throughput import (
    BENCH_SECRET,
    CpuMeter,
    Run,
    Sampler,
    Worker,
    campaign,
    cpu_seconds,
    outcomes_phase,
)
from pipeline.simulate import encoded


def ready(worker: Worker) -> bool:
    url = f"http://127.0.0.1:{worker.metrics_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def wait_ready(workers: list[Worker], timeout: float, steady_s: float = 2.0) -> float:
    """Wait until every worker has answered /readyz 200 for `steady_s`; return seconds."""
    started = time.monotonic()
    since: float | None = None
    while True:
        if not all(w.alive() for w in workers):
            raise RuntimeError("a worker exited while waiting for readiness")
        if all(ready(w) for w in workers):
            since = since or time.monotonic()
            if time.monotonic() - since >= steady_s:
                return time.monotonic() - started
        else:
            since = None
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"workers not ready after {timeout:.0f} s")
        time.sleep(0.2)


def two_workers_phase(run: Run) -> None:
    params, bench, console = run.params, run.bench, run.console
    one = run.herald.campaign
    assert one is not None and bench.publisher is not None and bench.worker.process is not None
    env = bench.worker.env | {"HERALD_DATA_DIR": str(run.workdir / "data2")}
    if params.cpu is not None:  # a CPU each: the second gets the first allowed one
        env["HERALD_CPUS"] = str(min(os.sched_getaffinity(0)))
    second = Worker(env, run.workdir / "worker2.log", None)
    sampler2 = Sampler(second)
    try:
        second.start()
        sampler2.__enter__()
        # The second worker needs its assignment and recovery; the first, its rebalance.
        time.sleep(2.0)
        join_s = wait_ready([second, bench.worker], params.timeout_s)
        console.print(f"two workers ready {join_s + 2:.1f} s after the second started")
        rng = random.Random(params.seed + 200)
        now = time.time_ns() // 1_000_000
        events = campaign(
            run.traffic.phones, params.recipients, params.campaign_size, rng, now, tag="-x2"
        )
        records = list(encoded(events, BENCH_SECRET.encode()))
        expected = sum(len(e["recipients"]) for _, e in events)
        assert second.process is not None
        pid2 = second.process.pid
        cpu = CpuMeter(
            bench.worker.process.pid, run.broker.process.pid if run.broker.process else None
        )
        cpu2_before = cpu_seconds(pid2)
        phase = outcomes_phase(
            bench.tail, [bench.sampler, sampler2], bench.publisher, cpu, records, expected,
            params.timeout_s, "the two workers' campaign",
        )  # fmt: skip
        cpu2 = cpu_seconds(pid2) - cpu2_before
    finally:
        sampler2.__exit__()
        second.stop()
    ratio = phase.rate / one.rate
    other = max(0.0, phase.other_cpu_s - cpu2)
    console.print(
        f"two workers: {expected:,} outcomes in {phase.seconds:.1f} s, {phase.rate:,.0f}/s, "
        f"{ratio:.2f}x one worker"
    )
    run.data["two_workers"] = phase
    run.figures |= {
        "two_workers_per_s": round(phase.rate, 1),
        "two_workers_count": phase.count,
        "two_workers_seconds": round(phase.seconds, 3),
        "two_workers_vs_one": round(ratio, 3),
        "two_workers_vs_ceiling": round(phase.rate / run.ceiling.rate, 4),
        "two_workers_join_s": round(join_s + 2, 2),
        "two_workers_worker_cpu_s": round(phase.python_cpu_s + cpu2, 2),
        "two_workers_broker_cpu_s": round(phase.broker_cpu_s, 2),
        "two_workers_other_cpu_s": round(other, 2),
    }
    run.rows.append((
        "6. two workers, one group: campaign decisions",
        f"{expected:,} recipients in {len(records):,} events", f"{phase.rate:,.0f}/s",
        f"{ratio:.2f}x one worker ({phase.rate / run.ceiling.rate:.1%} of ceiling)",
        "(no target; noisy on 2 cores)",
        f"{other / phase.seconds:.0%}" if phase.seconds else "",
    ))  # fmt: skip

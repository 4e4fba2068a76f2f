"""HERALD_CPUS: every thread of a worker runs on the CPUs it names, and it decides there."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline import topics
from pipeline.settings import Settings, parse_cpu_list
from pipeline.simulate import publish
from pipeline.verify import wait_for_outcomes
from tests.stream.test_crash import _encoded, _expected_pairs, _service_update, _setup

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir() or not hasattr(os, "sched_getaffinity"),
    reason="CPU affinity as Linux reports it in /proc",
)


def _thread_cpus(pid: int) -> dict[str, frozenset[int]]:
    """Each thread's name and the CPUs it may run on, as the kernel reports them."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        status = (task / "status").read_text()
        allowed = next(
            line.split(":", 1)[1] for line in status.splitlines()
            if line.startswith("Cpus_allowed_list:")
        )  # fmt: skip
        out[f"{task.name} {(task / 'comm').read_text().strip()}"] = parse_cpu_list(allowed)
    return out


@pytest.mark.broker
def test_a_pinned_worker_runs_every_thread_on_its_cpu_and_decides(
    settings: Settings, worker_factory: Any
) -> None:
    cpu = max(os.sched_getaffinity(0))
    worker = worker_factory(HERALD_CPUS=str(cpu))
    now = int(time.time() * 1000)
    secret = settings.subscriber_secret.reveal()
    events = [_service_update("pinned-1", "parcelgo", _setup(now)[0][:10], now, 0)]
    publish(settings, _encoded([(topics.BUSINESS_EVENTS, e) for e in events], secret))
    report = wait_for_outcomes(settings, _expected_pairs(events, secret), 45)
    assert report.ok, report.summary() + "\n" + worker.log()[-3000:]

    threads = _thread_cpus(worker.process.pid)
    # The deciding thread, faust's consumer thread, the /metrics server and more.
    assert len(threads) >= 3, threads
    assert all(cpus == {cpu} for cpus in threads.values()), threads
    assert f"cpus={cpu}" in worker.log()


@pytest.mark.parametrize(
    ("cpus", "error"),
    [
        ("{first},{beyond}", "HERALD_CPUS names CPUs this process may not use ({beyond})"),
        ("1-0", "HERALD_CPUS is not a CPU list"),
        ("two", "HERALD_CPUS is not a CPU list"),
    ],
)
def test_a_worker_refuses_cpus_it_cannot_run_on(cpus: str, error: str) -> None:
    """Before it connects to anything: no broker is needed to see the error."""
    allowed = os.sched_getaffinity(0)
    first, beyond = str(min(allowed)), str(max(allowed) + 1)
    env = {
        **os.environ,
        "HERALD_CPUS": cpus.format(first=first, beyond=beyond),
        "HERALD_BROKER": "127.0.0.1:1",  # nothing listens: the error must come first
    }
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "worker"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert error.format(beyond=beyond) in done.stderr

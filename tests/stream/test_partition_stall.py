"""An input partition that stops moving while records wait: noticed, nudged, drained.

How the stall is induced: the test names a partition in the worker's debug pause file
(HERALD_DEBUG_PAUSE_FILE, refused in production) and the worker pauses it once in its
real faust consumer, the way faust leaves a partition paused after a failed rebalance.
Everything after that is real: records pile up on the broker, the worker's stall
detector sees the lag and the still position, logs, counts, resumes and re-fetches.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline import topics
from pipeline.settings import Settings
from pipeline.simulate import publish
from pipeline.streams.stages import partition_for
from pipeline.verify import wait_for_outcomes
from tests.conftest import PARTITIONS
from tests.stream.test_crash import BIZ, _encoded, _expected_pairs, _service_update, _setup
from tests.stream.test_stall import wait_for_status

pytestmark = pytest.mark.broker


def samples(metrics_url: str, name: str) -> dict[tuple[str, str], float]:
    """Return a metric's values by (topic, partition)."""
    with urllib.request.urlopen(metrics_url, timeout=3) as response:
        text = response.read().decode()
    return {
        (s.labels["topic"], s.labels["partition"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def wait_for_log(worker: Any, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in worker.log():
        assert time.monotonic() < deadline, f"no {text!r} in the worker log"
        time.sleep(0.2)


def test_a_partition_left_paused_is_noticed_nudged_and_drained(
    settings: Settings, worker_factory: Any, tmp_path: Path
) -> None:
    """Stall logged and counted within seconds; the nudge resumes it and every pair is decided."""
    now = int(time.time() * 1000)
    secret = settings.subscriber_secret.reveal()
    phones = _setup(now)[0][:40]
    events = [
        _service_update(f"stuck-{i}", BIZ, phones[i * 10 : i * 10 + 10], now, i) for i in range(4)
    ]
    partition = partition_for(BIZ, PARTITIONS)  # every event is keyed by its business
    pause = tmp_path / "pause"
    pause.write_text("")
    worker = worker_factory(HERALD_DEBUG_PAUSE_FILE=str(pause), HERALD_STALL_AFTER="3")
    wait_for_status(worker.metrics_url.replace("/metrics", "/readyz"), 200, 60)
    pause.write_text(f"{topics.BUSINESS_EVENTS} {partition}\n")
    wait_for_log(worker, f"debug: pausing {topics.BUSINESS_EVENTS}[{partition}]", 10)

    started = time.monotonic()
    publish(settings, _encoded([(topics.BUSINESS_EVENTS, e) for e in events], secret))
    report = wait_for_outcomes(settings, _expected_pairs(events, secret), 40)
    took = time.monotonic() - started
    print(f"stalled partition drained {took:.1f} s after publishing; " + report.summary())

    assert report.ok, report.summary() + "\n" + worker.log()[-3000:]
    key = (topics.BUSINESS_EVENTS, str(partition))
    assert samples(worker.metrics_url, "herald_stalls_total")[key] == 1
    assert samples(worker.metrics_url, "herald_partition_stalled")[key] == 0
    log = worker.log()
    assert f"partition {topics.BUSINESS_EVENTS}[{partition}] stalled: position" in log
    assert f"partition {topics.BUSINESS_EVENTS}[{partition}] moves again" in log
    assert took >= 3  # nothing got through before the stall was noticed

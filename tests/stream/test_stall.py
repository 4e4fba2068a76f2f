"""A broker that stops answering: the worker says so, waits, and carries on by itself."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from pipeline import topics
from pipeline.broker import EmbeddedBroker
from pipeline.settings import Settings
from pipeline.simulate import publish
from pipeline.verify import wait_for_outcomes
from tests.stream.test_crash import _encoded, _events, _expected_pairs, _setup

pytestmark = pytest.mark.broker


def readiness(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def wait_for_status(url: str, status: int, timeout: float) -> float:
    """Return seconds until `url` answered `status`; fail after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if readiness(url) == status:
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"{url} did not answer {status} within {timeout} s")


def test_a_20_second_broker_stall_is_reported_and_survived_without_restart(
    broker: EmbeddedBroker, settings: Settings, worker_factory: Any
) -> None:
    """SIGSTOP the broker 20 s under load: /readyz says 503, then 200, and nothing is lost."""
    now = int(time.time() * 1000)
    secret = settings.subscriber_secret.reveal()
    phones, setup = _setup(now)
    events = _events(phones, now)[:20]
    worker = worker_factory()
    ready_url = worker.metrics_url.replace("/metrics", "/readyz")
    publish(settings, _encoded(setup, secret))
    wait_for_status(ready_url, 200, 60)
    publisher = threading.Thread(
        target=publish,
        args=(settings, _encoded([(topics.BUSINESS_EVENTS, e) for e in events], secret), 1.0),
    )
    publisher.start()
    time.sleep(4)
    broker.pause()
    try:
        noticed = wait_for_status(ready_url, 503, 15)
        time.sleep(max(0.0, 20 - noticed))
    finally:
        broker.resume()
    recovered = wait_for_status(ready_url, 200, 60)
    publisher.join()
    expected = _expected_pairs(events, secret)
    report = wait_for_outcomes(settings, expected, 120)
    print(f"not ready after {noticed:.1f} s of stall; ready {recovered:.1f} s after it ended; "
          + report.summary())  # fmt: skip
    assert report.ok, report.summary()
    assert worker.process is not None and worker.process.poll() is None  # never restarted

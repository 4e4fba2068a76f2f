"""`herald demo`: the whole pipeline on this machine, watched live, then stopped.

Starts the embedded broker and a real `herald worker` process, publishes a simulated
day of traffic, follows the worker's own /metrics until every (event, recipient) has
its outcome, prints a summary, and stops everything it started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.live import Live
from rich.table import Table

from pipeline import topics
from pipeline.broker import EmbeddedBroker, free_port
from pipeline.domain import InvalidEvent, KeyMaker, expand, validate_event
from pipeline.jsonio import json_to_record
from pipeline.policy import default_policy
from pipeline.processes import stop_process
from pipeline.settings import Settings
from pipeline.simulate import Scenario, Traffic, build_traffic, encoded, garbage_records, publish
from pipeline.streams.records import event_from_wire


@dataclass
class Progress:
    """What the worker's /metrics says it has done so far."""

    consumed: Counter[str] = field(default_factory=Counter)
    deliveries: Counter[str] = field(default_factory=Counter)
    suppressions: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    # Garbage-collection pauses so far: seconds and collections, by generation ("0".."2").
    gc_pause_s: dict[str, float] = field(default_factory=dict)
    gc_collections: Counter[str] = field(default_factory=Counter)

    @property
    def outcomes(self) -> int:
        return sum(self.deliveries.values()) + sum(self.suppressions.values())


def scrape(url: str) -> Progress:
    """Read Herald's progress counters and garbage-collection totals from a worker's /metrics."""
    with urllib.request.urlopen(url, timeout=2) as response:
        text = response.read().decode()
    p = Progress()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "herald_events_consumed_total":
                p.consumed[s.labels["topic"]] += int(s.value)
            elif s.name == "herald_deliveries_total":
                p.deliveries[s.labels["category"]] += int(s.value)
            elif s.name == "herald_suppressions_total":
                p.suppressions[s.labels["reason"]] += int(s.value)
            elif s.name == "herald_dead_letters_total":
                p.dead_letters[s.labels["stage"]] += int(s.value)
            elif s.name == "herald_gc_pause_seconds_sum":
                generation = s.labels["generation"]
                p.gc_pause_s[generation] = p.gc_pause_s.get(generation, 0.0) + s.value
            elif s.name == "herald_gc_pause_seconds_count":
                p.gc_collections[s.labels["generation"]] += int(s.value)
    return p


def expected_outcomes(traffic: Traffic, secret: bytes) -> int:
    """Count the (event, recipient) pairs the traffic should produce outcomes for."""
    return sum(outcomes_per_event(traffic.events, secret))


def outcomes_per_event(events: list[tuple[str, dict[str, Any]]], secret: bytes) -> list[int]:
    """The outcomes each business event among `events` should produce, in order (0 for
    an invalid one: a dead letter); records of other topics are left out."""
    from pipeline.codec import default_registry

    codec = default_registry()
    keys, policy = KeyMaker(secret), default_policy()
    counts = []
    for topic, obj in events:
        if topic != topics.BUSINESS_EVENTS:
            continue
        _key, record = json_to_record(topic, obj, secret)
        event = event_from_wire(
            codec.decode("herald.v1.BusinessEvent", codec.encode("herald.v1.BusinessEvent", record))
        )
        try:
            validate_event(event, policy, event.occurred_at)
        except InvalidEvent:
            counts.append(0)  # a dead letter, not outcomes
            continue
        expansion = expand(event, keys, policy, event.occurred_at)
        counts.append(len(expansion.recipients) + len(expansion.invalid))
    return counts


def render(p: Progress, expected: int, elapsed: float, rate: float) -> Table:
    table = Table(title=f"Herald demo — {elapsed:5.1f} s", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    for topic, n in sorted(p.consumed.items()):
        table.add_row(f"in: {topic}", f"{n:,}")
    for category, n in sorted(p.deliveries.items()):
        table.add_row(f"[green]delivered {category}", f"{n:,}")
    for reason, n in sorted(p.suppressions.items()):
        table.add_row(f"[yellow]suppressed {reason}", f"{n:,}")
    for stage, n in sorted(p.dead_letters.items()):
        table.add_row(f"[red]dead letters ({stage})", f"{n:,}")
    table.add_row("[bold]outcomes / expected", f"{p.outcomes:,} / {expected:,}")
    table.add_row("outcomes per second", f"{rate:,.0f}")
    return table


def wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except OSError:
            pass  # the endpoint is not up yet
        time.sleep(0.25)
    raise TimeoutError(f"timed out waiting for {what}")


def run_demo(
    subscribers: int = 5_000,
    scale: float = 1.0,
    seed: int = 7,
    timeout: float = 180.0,
    live: bool = True,
) -> int:
    """Run the demo end to end; return 0 when every outcome arrived."""
    console = Console()
    live = live and console.is_terminal  # a log file gets the summary only
    workdir = Path(tempfile.mkdtemp(prefix="herald-demo-"))
    metrics_port = free_port()
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    started = time.monotonic()
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        settings = Settings.from_env(broker=broker.bootstrap, data_dir=workdir / "data")
        secret = settings.subscriber_secret.reveal()
        console.print(f"broker on {broker.bootstrap}; logs in {workdir}")
        env = {**os.environ, "HERALD_BROKER": broker.bootstrap, "HERALD_SESSION_TIMEOUT": "6",
               "HERALD_DATA_DIR": str(workdir / "data")}  # fmt: skip
        with open(workdir / "worker.log", "ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "worker", "--metrics-port",
                 str(metrics_port)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        try:
            wait_until(lambda: scrape(url) is not None, 60, "the worker's /metrics")
            traffic = build_traffic(Scenario(seed=seed, subscribers=subscribers, scale=scale))
            setup = publish(settings, encoded(traffic.setup, secret))
            console.print(f"published {sum(setup.values()):,} account links, consent signals "
                          "and business profiles")  # fmt: skip
            per_subscriber = {t: setup[t] for t in (topics.ACCOUNT_LINKS, topics.USER_SIGNALS)}
            wait_until(
                lambda: all(scrape(url).consumed[t] >= n for t, n in per_subscriber.items()),
                timeout, "the worker to apply consent",
            )  # fmt: skip
            expected = expected_outcomes(traffic, secret)
            sent = publish(settings, encoded(traffic.events, secret))
            sent += publish(settings, garbage_records(traffic))
            console.print(f"published {sent[topics.BUSINESS_EVENTS]:,} business events "
                          f"({len(traffic.garbage)} of them garbage)")  # fmt: skip
            progress = _follow(url, expected, len(traffic.garbage), started, timeout, console, live)
        finally:
            stop_process(worker)
    complete = progress.outcomes >= expected
    elapsed = time.monotonic() - started
    console.print(render(progress, expected, elapsed, progress.outcomes / elapsed))
    if not complete:
        console.print(f"[red]incomplete: {progress.outcomes:,} of {expected:,} outcomes")
        return 1
    ok = sum(progress.deliveries.values()) > 0 and sum(progress.suppressions.values()) > 0
    console.print("[green]demo complete: every (event, recipient) has its outcome")
    return 0 if ok else 1


def _follow(
    url: str,
    expected: int,
    garbage: int,
    started: float,
    timeout: float,
    console: Console,
    live: bool,
) -> Progress:
    """Show progress until every outcome and dead letter arrived, or the timeout."""
    deadline = started + timeout
    last_n, last_t = 0, time.monotonic()
    progress = scrape(url)
    with Live(console=console, auto_refresh=False, transient=True) if live else _NoLive() as view:
        while time.monotonic() < deadline:
            progress = scrape(url)
            now = time.monotonic()
            rate = (progress.outcomes - last_n) / max(now - last_t, 1e-6)
            last_n, last_t = progress.outcomes, now
            if live:
                view.update(render(progress, expected, now - started, rate), refresh=True)
            if progress.outcomes >= expected and sum(progress.dead_letters.values()) >= garbage:
                break
            time.sleep(0.5)
    return progress


class _NoLive:
    def __enter__(self) -> _NoLive:
        return self

    def update(self, *args: object, **kwargs: object) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None

"""Shared fixtures: a real embedded broker, real worker processes, real clients."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.broker import EmbeddedBroker, free_port
from pipeline.demo import Progress, scrape
from pipeline.processes import stop_process
from pipeline.settings import Settings
from pipeline.topics import create_topics, herald_topics

PARTITIONS = 3


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A fresh embedded Tansu broker per test (topic names are fixed by the contract)."""
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as b:
        yield b


class WorkerProcess:
    """A `herald worker` subprocess with its own app id, metrics port and log."""

    def __init__(self, bootstrap: str, app_id: str, workdir: Path, extra_env: dict[str, str]):
        self.metrics_port = free_port()
        self.log_path = workdir / f"worker-{app_id}.log"
        self.env = {
            **os.environ,
            "HERALD_BROKER": bootstrap,
            "HERALD_APP_ID": app_id,
            "HERALD_PARTITIONS": str(PARTITIONS),
            "HERALD_SESSION_TIMEOUT": "6",
            "HERALD_DATA_DIR": str(workdir / "data"),
            **extra_env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> WorkerProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "worker",
                 "--metrics-port", str(self.metrics_port)],
                stdout=log, stderr=subprocess.STDOUT, env=self.env,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log()
            try:
                scrape(self.metrics_url)
                return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("worker did not expose /metrics in 60 s")

    def progress(self) -> Progress:
        return scrape(self.metrics_url)

    def wait_consumed(self, counts: dict[str, int], timeout: float = 60) -> None:
        """Block until the worker has consumed at least `counts` records per topic."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            consumed = self.progress().consumed
            if all(consumed[t] >= n for t, n in counts.items()):
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker consumed {dict(self.progress().consumed)}, wanted {counts}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture
def app_id() -> str:
    """A fresh application id, so each test has its own topics' consumers and state."""
    return f"herald-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(broker: EmbeddedBroker, app_id: str) -> Settings:
    """Settings pointing at the session broker, with Herald's topics created."""
    s = Settings.from_env(env={}, broker=broker.bootstrap, app_id=app_id, partitions=PARTITIONS)
    create_topics(s.broker, herald_topics(app_id, PARTITIONS))
    return s


@pytest.fixture
def worker_factory(
    broker: EmbeddedBroker, app_id: str, tmp_path: Path
) -> Iterator[type[WorkerProcess] | object]:
    """Start worker processes for this test; all are stopped at its end."""
    started: list[WorkerProcess] = []

    def start(**extra_env: str) -> WorkerProcess:
        w = WorkerProcess(broker.bootstrap, app_id, tmp_path, extra_env).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()

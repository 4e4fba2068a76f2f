"""Liveness and readiness of a worker, served with /metrics on one HTTP port.

- /healthz (liveness): the worker's event loop is turning (a heartbeat within 30 s),
  and no input partition stays stalled after a nudge (pipeline/streams/progress.py).
  A failing liveness probe means "restart me".
- /readyz (readiness): partitions assigned and their tables recovered, reference data
  loaded, and the broker answering now. A broker stall makes the worker not ready
  (stop sending it work, page someone) without killing it: it recovers by itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.metrics import Metrics

HEARTBEAT_STALE_S = 30.0
BROKER_STALE_S = 6.0


@dataclass
class Health:
    """What the worker knows about itself; written by the worker loop, read by HTTP."""

    clock: Callable[[], float] = field(default=time.monotonic)
    heartbeat_at: float = 0.0
    broker_ok_at: float = 0.0
    recovered: bool = False  # partitions assigned and tables recovered
    reference_loaded: bool = False
    stalled_since: float | None = None  # an input partition stalled and a nudge did not help

    def now(self) -> float:
        return self.clock()

    def beat(self) -> None:
        self.heartbeat_at = self.now()

    def broker_answered(self) -> None:
        self.broker_ok_at = self.now()

    def live(self) -> tuple[bool, str]:
        """Return (alive, why) for the liveness probe."""
        age = self.now() - self.heartbeat_at
        if self.heartbeat_at and age > HEARTBEAT_STALE_S:
            return False, f"event loop silent for {age:.0f} s"
        if self.stalled_since is not None:
            stalled = self.now() - self.stalled_since
            return False, f"an input partition has not moved for {stalled:.0f} s despite a nudge"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """Return (ready, why) for the readiness probe."""
        if not self.recovered:
            return False, "partitions not assigned or tables recovering"
        if not self.reference_loaded:
            return False, "reference data not loaded"
        age = self.now() - self.broker_ok_at
        if not self.broker_ok_at or age > BROKER_STALE_S:
            return False, f"broker has not answered for {age:.0f} s"
        return True, "ok"


def serve_http(metrics: Metrics, health: Health, port: int, host: str = "127.0.0.1") -> None:
    """Serve /metrics, /healthz and /readyz on host:port from a background thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
                return
            if self.path.startswith("/healthz"):
                ok, why = health.live()
            elif self.path.startswith("/readyz"):
                ok, why = health.ready()
                metrics.ready.set(1 if ok else 0)
            else:
                self._send(404, b"not found\n", "text/plain")
                return
            self._send(200 if ok else 503, f"{why}\n".encode(), "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # probes every few seconds would drown the worker's log

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="herald-http", daemon=True).start()

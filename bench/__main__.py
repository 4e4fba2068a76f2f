"""`make bench`: the full benchmark of issue 5 in one run on one embedded broker.

1 and 4 (throughput, the ceiling, links and signals) and 3 (the 100,000-recipient
campaign's fan-out) come from `bench.throughput`; then, with the same broker and
worker: 2 latency under open-loop load (`bench.latency`), 6 two workers
(`bench.scaleout`), 7 the naive faust agent (`bench.naive`), and the plot
(`bench.plot`). 5, restart-to-ready with a million subscribers, is its own command:
`python -m bench.restart` (see bench/README.md).
"""

from __future__ import annotations

import signal
import sys

from bench.latency import latency_phase, targets_phase
from bench.naive import naive_phase
from bench.plot import plot_hook
from bench.scaleout import two_workers_phase
from bench.throughput import _interrupted, main

EXTRAS = (
    ("targets", targets_phase),
    ("latency", latency_phase),
    ("two-workers", two_workers_phase),
    ("naive", naive_phase),
)

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        sys.exit(main(suite=True, extras=EXTRAS, after=(plot_hook,)))
    except KeyboardInterrupt:
        print("interrupted: broker and workers stopped", file=sys.stderr)
        sys.exit(130)

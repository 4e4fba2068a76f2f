"""The benchmark's plot: throughput next to the ceiling, and latency at each load.

`python -m bench` draws it from the run's result line into bench/results/latest.png;
`python -m bench.plot` redraws it from the last full-suite line of results.jsonl
(`--line N` for another line, `--out PATH` for another file). Needs matplotlib (in the
dev extras).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.throughput import RESULTS_DIR, RESULTS_FILE

DEFAULT_OUT = RESULTS_DIR / "latest.png"

THROUGHPUT = (
    ("ceiling_records_per_s", "ceiling:\naiokafka loop", "#888888"),
    ("campaign_per_s", "campaign\ndecisions", "#1f77b4"),
    ("mixed_per_s", "simulated day\ndecisions", "#1f77b4"),
    ("link_signal_per_s", "link and signal\nupdates", "#2ca02c"),
    ("two_workers_per_s", "campaign,\ntwo workers", "#9467bd"),
    ("naive_campaign_per_s", "campaign,\nnaive agent", "#d62728"),
    ("naive_link_signal_per_s", "updates,\nnaive agent", "#d62728"),
)


def draw(line: dict[str, Any], out: Path = DEFAULT_OUT) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = line["figures"]
    m = line.get("machine", {})
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2), width_ratios=(1.35, 1))
    ceiling = f.get("ceiling_records_per_s") or 0
    bars = [(label, f[key], color) for key, label, color in THROUGHPUT if f.get(key)]
    xs = range(len(bars))
    left.bar(xs, [v for _, v, _ in bars], color=[c for _, _, c in bars])
    left.set_xticks(list(xs), [label for label, _, _ in bars], fontsize=7)
    left.set_ylabel("per second (records, decisions or updates)")
    if ceiling:
        left.axhline(ceiling * 0.5, color="#444444", linestyle="--", linewidth=1)
        left.text(len(bars) - 0.5, ceiling * 0.5, "target: 50% of ceiling", ha="right",
                  va="bottom", fontsize=8)  # fmt: skip
        for x, (_, v, _) in zip(xs, bars, strict=True):
            left.text(x, v, f"{v:,.0f}\n{v / ceiling:.0%}", ha="center", va="bottom", fontsize=8)
    left.set_title("throughput, one worker unless noted (% of the ceiling)", fontsize=10)
    left.set_ylim(0, max(v for _, v, _ in bars) * 1.18 if bars else 1)

    # Figure prefixes: latency_day_<load>_* for the simulated day, latency_<load>_* for
    # the small promotions (older runs have only these).
    series = [
        (prefix, label, hatch)
        for prefix, label, hatch in (("latency_day_", "day", ""), ("latency_", "small", "//"))
        if any(re.fullmatch(rf"{prefix}\d+_p50_ms", k) for k in f)
    ]
    loads = sorted(
        {int(k.rsplit("_", 3)[-3]) for k in f if re.fullmatch(r"latency_(day_)?\d+_p50_ms", k)}
    )
    if loads:
        bars_per_load = 2 * len(series)
        width = 0.8 / bars_per_load
        n = 0
        for prefix, label, hatch in series:
            for q, color in (("p50", "#1f77b4"), ("p99", "#ff7f0e")):
                # A load only one traffic ran gets no bar for the other (NaN draws none).
                values = [f.get(f"{prefix}{load}_{q}_ms", math.nan) for load in loads]
                pos = [j + (n - (bars_per_load - 1) / 2) * width for j in range(len(loads))]
                right.bar(pos, values, width, color=color, hatch=hatch, edgecolor="white",
                          label=f"{label} {q}")  # fmt: skip
                for x, v in zip(pos, values, strict=True):
                    if not math.isnan(v):
                        right.text(x, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=6)
                n += 1
        right.set_yscale("log")
        right.axhline(50, color="#1f77b4", linestyle=":", linewidth=1)
        right.axhline(250, color="#ff7f0e", linestyle=":", linewidth=1)
        right.text(-0.45, 50, "p50 target 50 ms (at 50%)", fontsize=7, va="bottom")
        right.text(-0.45, 250, "p99 target 250 ms (at 50%)", fontsize=7, va="bottom")
        base = f.get("latency_base_per_s") or 0
        right.set_xticks(
            list(range(len(loads))), [f"{load}%\n{base * load / 100:,.0f}/s" for load in loads]
        )
        right.set_ylabel("publish -> outcome on the broker, ms (log)")
        right.set_xlabel(
            f"offered decisions, share of the {f.get('latency_base', '')} rate; day: its own "
            f"events, small: promotions of {f.get('latency_recipients_per_event', '?')}",
            fontsize=8,
        )
        right.legend(fontsize=7, ncols=2)
        right.set_title("latency under open-loop load", fontsize=10)
    else:
        right.axis("off")
        right.text(0.5, 0.5, "no latency figures in this run", ha="center")

    other = f.get("campaign_other_cpu_s")
    secs = f.get("campaign_seconds")
    busy = f", other CPU during the campaign {other / secs:.0%} of a core" if other and secs else ""
    fig.suptitle(
        f"Herald benchmark {line.get('timestamp', '')} at {line.get('git', '?')}: "
        f"{m.get('nproc', '?')} CPUs ({m.get('cpu', '?')}), Python {m.get('python', '?')}{busy}",
        fontsize=10,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_hook(run: Any, line: dict[str, Any]) -> None:
    """`python -m bench`'s last step: draw this run."""
    if "plot" in run.params.skip:
        return
    out = draw(line)
    line["plot"] = str(out.relative_to(RESULTS_DIR.parent.parent))
    run.console.print(f"plot: {out}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.plot", description=__doc__)
    p.add_argument("--line", type=int, help="line number in results.jsonl (1-based)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args(argv)
    lines = [json.loads(x) for x in RESULTS_FILE.read_text().splitlines() if x.strip()]
    if a.line:
        line = lines[a.line - 1]
    else:
        suite = [x for x in lines if x.get("suite")]
        if not suite:
            print("no full-suite line in results.jsonl", file=sys.stderr)
            return 1
        line = suite[-1]
    print(draw(line, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

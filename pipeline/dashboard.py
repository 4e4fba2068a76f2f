"""Draw the Grafana dashboard's panels from a live Prometheus, for a picture in the README.

`python -m pipeline.dashboard --prometheus http://127.0.0.1:9090` reads
deploy/grafana/dashboards/herald.json, runs each panel's queries as range queries and
lays the panels out on the dashboard's own grid (matplotlib, a dev dependency).
"""

from __future__ import annotations

import argparse
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy/grafana/dashboards/herald.json"
GRID_COLUMNS = 24
UNITS = {"reqps": "per second", "s": "seconds", "short": ""}  # Grafana unit ids, spelled out


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    expr: str  # as written in the dashboard, Grafana variables included
    legend: str


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    """Read a dashboard JSON file."""
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def panel_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    """Return every query of every panel, rows' nested panels included."""
    found: list[PanelQuery] = []
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                found.append(
                    PanelQuery(panel["title"], target["expr"], target.get("legendFormat", ""))
                )
    return found


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return [p for p in panels if p.get("type") != "row"]


def concrete(expr: str, rate_interval: str = "1m", range_: str = "1h") -> str:
    """Replace Grafana's built-in variables with fixed durations, as Grafana would."""
    expr = re.sub(r"\$\{?__rate_interval\}?", rate_interval, expr)
    expr = re.sub(r"\$\{?__interval\}?", rate_interval, expr)
    expr = re.sub(r"\$\{?__range\}?", range_, expr)
    if "$" in expr:
        raise ValueError(f"unknown Grafana variable in {expr!r}")
    return expr


def query(base_url: str, path: str, params: dict[str, str]) -> dict[str, Any]:
    """Call Prometheus's HTTP API and return its JSON answer, errors included."""
    url = f"{base_url.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            answer: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as exc:  # 400 and 422 carry the parse error as JSON
        answer = json.load(exc)
    return answer


def query_range(base_url: str, expr: str, start: float, end: float, step: float) -> dict[str, Any]:
    """Run a range query over [start, end] with `step` seconds between points."""
    params = {"query": expr, "start": str(start), "end": str(end), "step": str(step)}
    return query(base_url, "/api/v1/query_range", params)


def legend(fmt: str, labels: dict[str, str]) -> str:
    """Fill a Grafana legend format ("{{topic}}") from a series' labels."""
    if not fmt:
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def render(
    dashboard: dict[str, Any],
    base_url: str,
    out: Path,
    minutes: float = 15,
    rate_interval: str = "1m",
) -> None:
    """Draw every panel over the last `minutes` into a PNG at `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = time.time()
    start = end - minutes * 60
    step = max(1.0, minutes * 60 / 240)
    panels = _panels(dashboard)
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig = plt.figure(figsize=(18, rows * 0.42 + 0.6))
    fig.suptitle(f"{dashboard['title']} — last {minutes:g} min", fontsize=13, x=0.01, ha="left")
    top = 1 - 0.6 / (rows * 0.42 + 0.6)  # below the title
    for panel in panels:
        pos = panel["gridPos"]
        # Grid units to figure fractions, leaving room for titles and tick labels.
        left = pos["x"] / GRID_COLUMNS + 0.035
        width = pos["w"] / GRID_COLUMNS - 0.05
        bottom = top * (1 - (pos["y"] + pos["h"]) / rows) + 0.035
        height = top * pos["h"] / rows - 0.07
        ax = fig.add_axes((left, bottom, width, height))
        ax.set_title(panel["title"], fontsize=9, loc="left")
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        series = []
        for target in panel.get("targets", []):
            expr = concrete(target["expr"], rate_interval, f"{int(minutes)}m")
            answer = query_range(base_url, expr, start, end, step)
            for s in answer.get("data", {}).get("result", []):
                name = legend(target.get("legendFormat", ""), s["metric"])
                points = [(float(t) - end, float(v)) for t, v in s["values"]]
                series.append((name, points))
        if panel["type"] == "stat":
            ax.axis("off")
            text = "   ".join(
                name if panel["options"].get("textMode") == "name" else f"{name}: {pts[-1][1]:g}"
                for name, pts in series
            )
            ax.text(0.5, 0.4, text or "no data", ha="center", va="center", fontsize=11)
            continue
        for name, points in series:
            ax.plot([t / 60 for t, _ in points], [v for _, v in points], label=name, lw=1.2)
        for step_ in (
            panel.get("fieldConfig", {})
            .get("defaults", {})
            .get("thresholds", {})
            .get("steps", [])[1:]
        ):
            ax.axhline(step_["value"], color="red", lw=0.8, ls="--")
        if not series:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlim(-minutes, 0)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("minutes ago", fontsize=7)
        ax.set_ylabel(UNITS.get(unit, unit), fontsize=7)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=6, loc="upper left", ncol=3, frameon=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Render the dashboard from a running Prometheus."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--rate-interval", default="1m")
    args = parser.parse_args(argv)
    render(
        load_dashboard(args.dashboard), args.prometheus, args.out, args.minutes, args.rate_interval
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

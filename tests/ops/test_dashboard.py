"""The Grafana dashboard file, its provisioning, and the renderer's query helpers."""

from __future__ import annotations

import pytest
import yaml

from pipeline.dashboard import concrete, legend, load_dashboard, panel_queries
from tests.ops.conftest import ROOT

GRAFANA = ROOT / "deploy/grafana"


def test_dashboard_has_the_panels_operators_need() -> None:
    """Throughput, outcomes, suppressions, latency, lag, dead letters, workers, policy."""
    titles = " | ".join(p["title"].lower() for p in load_dashboard()["panels"])
    for word in ("throughput in", "throughput out", "outcome mix", "suppressions by reason",
                 "latency", "lag per partition", "dead letters", "workers and partitions",
                 "policy version"):  # fmt: skip
        assert word in titles, word


def test_panels_use_the_provisioned_datasource_and_do_not_overlap() -> None:
    """Every query names the provisioned Prometheus by uid; no two panels share a grid cell."""
    (source,) = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    dashboard = load_dashboard()
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])}  # fmt: skip
        assert not cells & mine, panel["title"]
        cells |= mine
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/herald.yml").read_text())
    assert provider["providers"][0]["type"] == "file"


def test_concrete_replaces_grafana_variables() -> None:
    """$__rate_interval, $__interval and $__range become durations; others are refused."""
    assert concrete("rate(x[$__rate_interval])") == "rate(x[1m])"
    assert concrete("increase(x[${__range}])", range_="2h") == "increase(x[2h])"
    with pytest.raises(ValueError):
        concrete('x{instance="$instance"}')
    for q in panel_queries(load_dashboard()):
        assert "$" not in concrete(q.expr), q


def test_legend_fills_labels() -> None:
    """A legend format takes each series' labels; with none, the labels are listed."""
    assert legend("{{stage}} {{error_type}}", {"stage": "decode", "error_type": "X"}) == "decode X"
    assert legend("", {"topic": "deliveries"}) == "topic=deliveries"

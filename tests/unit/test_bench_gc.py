"""The benchmark's garbage-collection figures: per generation, and only what a phase spent."""

from __future__ import annotations

from bench.throughput import GcSpent


def test_describe_names_each_generation_that_collected() -> None:
    spent = GcSpent({"0": 0.21, "1": 0.74, "2": 0.0}, {"0": 2, "1": 1, "2": 0})
    assert spent.describe() == "0.95 s in 3 collections (generation 0: 2, 0.21 s; 1: 1, 0.74 s)"


def test_a_phase_without_collections_says_so() -> None:
    assert GcSpent({"0": 0.0}, {"0": 0}).describe() == "0.00 s in 0 collections"
    assert GcSpent().describe() == "0.00 s in 0 collections"


def test_figures_are_flat_per_generation() -> None:
    spent = GcSpent({"0": 0.2104, "2": 0.5}, {"0": 2, "2": 1})
    assert spent.figures("campaign") == {
        "campaign_gc_s": 0.71,
        "campaign_gc0_s": 0.21,
        "campaign_gc0_collections": 2,
        "campaign_gc2_s": 0.5,
        "campaign_gc2_collections": 1,
    }

"""The peer benchmark's latency arithmetic (bench/peer_phase.py): pure, no services."""

from __future__ import annotations

import pytest

from bench.peer_phase import commit_latencies, quantiles, ratios


def test_each_transaction_is_seen_at_the_first_poll_whose_max_id_reaches_its_last_id() -> None:
    commits = [(10, 1.000), (20, 1.010), (30, 1.020), (40, 1.030)]
    seen = [(1.100, 20), (1.250, 40)]  # one poll saw two transactions at once, the next two more
    assert commit_latencies(commits, seen) == pytest.approx([100.0, 90.0, 230.0, 220.0])


def test_a_transaction_never_seen_is_left_out() -> None:
    assert commit_latencies([(10, 1.0), (20, 1.01)], [(1.05, 10)]) == pytest.approx([50.0])


def test_quantiles_pick_as_clickhouse_quantiles_exact_does() -> None:
    q = quantiles([float(v) for v in range(1, 101)])  # 1..100: index int(level * 100) of the sorted values
    assert (q["p50"], q["p90"], q["p99"], q["max"], q["avg"], q["rows"]) == (51.0, 91.0, 100.0, 100.0, 50.5, 100)


def test_ratios_are_this_project_over_the_peers_best_run() -> None:
    ours = {
        "throughput": {"end_to_end_rows_per_s": 90_000.0},
        "latency": {"commit_to_queryable_ms": {"p50": 50.0, "p90": 80.0, "p99": 120.0, "max": 200.0}},
    }
    peer = {
        "throughput_runs": [{"end_to_end_rows_per_s": 30_000.0}, {"end_to_end_rows_per_s": 45_000.0}],
        "latency": {"commit_to_queryable_ms": {"p50": 100.0, "p90": 200.0, "p99": 0.0, "max": 400.0}},
    }
    r = ratios(ours, peer)
    assert r == {"throughput": 2.0, "latency_p50": 0.5, "latency_p90": 0.4, "latency_p99": None, "latency_max": 0.5}

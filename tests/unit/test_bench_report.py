"""Pieces of the bench report (bench/report.py) that add up or word figures: pure, no services."""

from __future__ import annotations

from bench.report import _bridge_total_mb, _event_latency_rows


def test_the_bridges_memory_is_what_it_starts_without_the_source_database() -> None:
    m = {
        "bridge_process_vmhwm": 1000.0,
        "events_worker_vmhwm": 140.0,
        "tansu_vmhwm": 240.0,
        "postgres_total_pss_peak": 90.0,
    }
    assert _bridge_total_mb(m) == 1380.0
    assert _bridge_total_mb({"bridge_process_vmhwm": 1000.0, "tansu_vmhwm": None}) == 1000.0  # an older result


def test_the_events_lane_rows_appear_only_when_measured() -> None:
    assert _event_latency_rows(None) == []
    rows = _event_latency_rows(
        {
            "events": 30000,
            "p50": 169.0,
            "p90": 230.0,
            "p99": 2658.0,
            "max": 2949.0,
            "behind_mirror_p50": 16.0,
            "behind_mirror_max": 2767.0,
        }
    )
    assert [r[0] for r in rows] == ["events: p50 / p99", "events behind mirror"]
    assert rows[0][1] == "169 / 2,658 ms" and "30,000 events" in rows[0][2]
    assert rows[1][1] == "p50 16 ms" and "max 2,767 ms" in rows[1][2]

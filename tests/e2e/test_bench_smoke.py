"""The benchmark harness still runs end to end (figures are not asserted: speed belongs to `make bench`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_run_reports_every_phase() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--quick",
            "--no-json",
            "--rows",
            "5000",
            "--snapshot-rows",
            "2000",
            "--latency-seconds",
            "3",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for heading in ("Snapshot", "Streaming throughput", "Latency at", "Peer: ClickHouse", "Peak memory"):
        assert heading in done.stdout
    assert "end to end" in done.stdout and "p50" in done.stdout

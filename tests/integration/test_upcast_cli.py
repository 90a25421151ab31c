"""`cdc events upcast` as a user runs it, on the embedded store of a state dir: events stored while only
OrderPlaced v1 existed, then translators with v2 (first with an upcaster that fails on one event)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from cdc.adapters.clickhouse import open_embedded
from cdc.events.store import ClickHouseEventStore
from tests.integration.test_upcast_stored import _log, _v1_only

PICKY = """
from cdc.domain.events import event, load_modules, upcaster

load_modules(["cdc.demo.events"])  # the shop's classes, their declarations kept in a registry of their own
from cdc.demo import events as shop

event("OrderPlaced", version=1, aggregate="order", key="order_id")(shop.OrderPlacedV1)
event("OrderPlaced", version=2, aggregate="order", key="order_id")(shop.OrderPlaced)


@upcaster("OrderPlaced", from_version=1)
def v1_to_v2(payload):
    if payload["order_id"] == 102:
        raise ValueError("order 102 is odd")
    return shop.order_placed_v1_to_v2(payload)
"""


def _upcast(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_")}
    env.update(PYTHONPATH=f"{tmp_path}{os.pathsep}{os.getcwd()}", PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "cdc.cli", "events", "upcast", *args, "--state-dir", str(tmp_path / "state")]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def test_cdc_events_upcast_reports_progress_failures_and_a_summary_and_runs_again_idempotently(tmp_path: Path) -> None:
    log = _log()
    wh = open_embedded(tmp_path / "state")
    try:
        ClickHouseEventStore(wh, _v1_only()).append(log.events)
    finally:
        wh.close()
    (tmp_path / "picky_events.py").write_text(textwrap.dedent(PICKY))
    bad = next(e.event_id for e in log.events if e.aggregate_id == "102")

    picky = _upcast(tmp_path, "--translators", "picky_events", "--batch-rows", "1")
    assert picky.returncode == 1, picky.stdout + picky.stderr
    lines = picky.stdout.splitlines()
    assert lines[:2] == ["  1/2 events", "  2/2 events, 1 failed"]  # progress, one batch at a time
    assert "2 stored event(s) were behind the latest versions of OrderPlaced" in lines
    assert "upcast 1 OrderPlaced v1 -> v2" in lines
    assert "FAILED 1 OrderPlaced v1: the upcaster raised (they stay v1)" in lines
    assert f"  OrderPlaced v1 {bad}: ValueError: order 102 is odd" in lines

    dry = _upcast(tmp_path, "--translators", "cdc.demo.events", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would upcast 1 OrderPlaced v1 -> v2" in dry.stdout.splitlines()

    done = _upcast(tmp_path, "--translators", "cdc.demo.events")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "upcast 1 OrderPlaced v1 -> v2" in done.stdout.splitlines()

    again = _upcast(tmp_path, "--translators", "cdc.demo.events")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.splitlines() == ["every stored event is in its type's latest shape"]

    wh = open_embedded(tmp_path / "state")
    try:
        rows = wh.query(
            "SELECT aggregate_id, latest_version, payload_latest FROM events.domain_events FINAL"
            " WHERE event_type = 'OrderPlaced' ORDER BY aggregate_id"
        )
    finally:
        wh.close()
    assert [(a, v, json.loads(p).get("delivery_address")) for a, v, p in rows] == [
        ("100", 2, "100 Elm St"),
        ("101", 2, "101 Oak Ave"),
        ("102", 2, "102 Elm St"),
    ]

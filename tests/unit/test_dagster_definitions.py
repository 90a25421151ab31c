"""The Dagster definitions load (without connecting to anything) and hold what the bridge expects."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, DailyPartitionsDefinition, RunRequest, build_schedule_context

from cdc.demo.projections import PROJECTIONS
from cdc.errors import ConfigError, WarehouseError
from dagster_project import quality
from dagster_project.definitions import build_definitions
from dagster_project.resources import SourceResource, WarehouseResource

DEFS = build_definitions()
ROOT = Path(__file__).resolve().parents[2]
TABLES = ("customers", "products", "orders", "order_items")
MIRROR_CHECKS = {"row_count_matches_postgres", "fresh", "unique_keys", "no_toast_placeholders"}


def test_dagster_cli_validates_the_definitions_without_connecting(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"  # must stay absent: loading opens no store
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path),
        "CDC_STATE_DIR": str(state_dir),
        "CDC_CLICKHOUSE_URL": "http://127.0.0.1:9/",
        "CDC_SOURCE_DSN": "postgresql://u:secret@127.0.0.1:9/x",
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-m", "dagster_project.definitions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful" in done.stdout + done.stderr
    assert not state_dir.exists()


def test_asset_graph_is_source_topic_mirror_events_and_reports() -> None:
    specs = {s.key: s for s in DEFS.resolve_all_asset_specs()}
    expected = {AssetKey(["events", "domain_events"])}
    for t in TABLES:
        expected |= {
            AssetKey(["postgres", t]),
            AssetKey(["kafka", f"shop.public.{t}"]),
            AssetKey(["clickhouse", "shop", t]),
        }
    expected |= {AssetKey(["reports", p.name]) for p in PROJECTIONS}
    assert set(specs) == expected
    assert {d.asset_key for d in specs[AssetKey(["clickhouse", "shop", "orders"])].deps} == {
        AssetKey(["kafka", "shop.public.orders"])
    }
    assert {d.asset_key for d in specs[AssetKey(["events", "domain_events"])].deps} == {
        AssetKey(["kafka", f"shop.public.{t}"]) for t in TABLES
    }
    revenue = specs[AssetKey(["reports", "revenue_daily_product"])]
    assert {d.asset_key for d in revenue.deps} == {
        AssetKey(["events", "domain_events"]),
        AssetKey(["clickhouse", "shop", "products"]),
    }
    assert isinstance(revenue.partitions_def, DailyPartitionsDefinition)
    graph = DEFS.resolve_asset_graph()
    assert graph.get(revenue.key).is_materializable
    assert not graph.get(AssetKey(["clickhouse", "shop", "orders"])).is_materializable
    for p in PROJECTIONS:
        spec = specs[AssetKey(["reports", p.name])]
        assert spec.group_name == "projections"
        assert (spec.partitions_def is None) == (p.name != "revenue_daily_product")


def test_checks_guard_every_mirror_and_the_event_store() -> None:
    keys = DEFS.resolve_asset_graph().asset_check_keys
    found = {(k.asset_key, k.name) for k in keys}
    expected = {(AssetKey(["clickhouse", "shop", t]), name) for t in TABLES for name in MIRROR_CHECKS}
    assert found == expected | {(AssetKey(["events", "domain_events"]), "fresh")}


def test_jobs_sensor_and_schedules() -> None:
    assert {j.name for j in [DEFS.resolve_job_def(n) for n in ("projections", "full_rebuild", "checks")]} == {
        "projections",
        "full_rebuild",
        "checks",
    }
    projections = DEFS.resolve_job_def("projections")
    assert {k for k in projections.asset_layer.executable_asset_keys} == {
        AssetKey(["reports", p.name]) for p in PROJECTIONS
    }
    assert DEFS.resolve_job_def("full_rebuild").run_tags["cdc/builds"] == projections.run_tags["cdc/builds"]
    sensor = DEFS.resolve_sensor_def("new_events")
    assert sensor.job_name == "projections" and sensor.default_status.value == "RUNNING"
    schedule = DEFS.resolve_schedule_def("full_rebuild_daily")
    assert (schedule.job_name, schedule.cron_schedule, schedule.execution_timezone) == (
        "full_rebuild",
        "0 3 * * *",
        "UTC",
    )
    (request,) = schedule.evaluate_tick(build_schedule_context()).run_requests or []
    assert isinstance(request, RunRequest)


def test_source_resource_never_shows_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    resource = SourceResource(dsn="postgresql://shop:s3cret@db:5432/shop")
    assert "s3cret" not in repr(resource) and "s3cret" not in str(resource)
    assert resource.source().dsn.endswith("@db:5432/shop")
    monkeypatch.delenv("CDC_SOURCE_DSN", raising=False)
    with pytest.raises(ConfigError, match="CDC_SOURCE_DSN"):
        SourceResource().source()


def test_warehouse_resource_does_not_take_the_embedded_store_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CDC_CLICKHOUSE_URL", raising=False)
    monkeypatch.setenv("CDC_STATE_DIR", str(tmp_path))
    with pytest.raises(WarehouseError, match="no bridge serves"):
        WarehouseResource().warehouse()
    assert not (tmp_path / "clickhouse").exists()


@pytest.mark.parametrize(("value", "limit"), [(None, 300.0), ("60", 60.0), ("2.5", 2.5)])
def test_freshness_limit_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None, limit: float
) -> None:
    if value is None:
        monkeypatch.delenv("CDC_FRESHNESS_SECONDS", raising=False)
    else:
        monkeypatch.setenv("CDC_FRESHNESS_SECONDS", value)
    assert quality.freshness_limit() == limit


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan"])
def test_a_bad_freshness_limit_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CDC_FRESHNESS_SECONDS", value)
    with pytest.raises(ConfigError, match="CDC_FRESHNESS_SECONDS"):
        quality.freshness_limit()

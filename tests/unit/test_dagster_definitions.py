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
from cdc.settings import Projections, projection_settings
from dagster_project import quality
from dagster_project.definitions import build_definitions
from dagster_project.gate import build_gate
from dagster_project.keys import mirror_key, postgres_key, topic_key
from dagster_project.resources import SourceResource, WarehouseResource
from dagster_project.tables import CapturedTable
from pipelines.catalog import load_projections
from pipelines.projection import ProjectionError

ROOT = Path(__file__).resolve().parents[2]
SHOP_TABLES = ("customers", "products", "orders", "order_items")
SHOP = [CapturedTable("shop", "public", t, ("id",), "cdc_shop", "", True, ("cdc.demo.events",)) for t in SHOP_TABLES]
# a database nobody here designed: two schemas, a composite key, one source without events
CRM = [
    CapturedTable("crm", "public", "accounts", ("account_id",), "cdc_crm", "CRM_DSN", True, ()),
    CapturedTable("crm", "billing", "invoice lines", ("invoice_id", "line"), "cdc_crm", "CRM_DSN", True, ()),
    CapturedTable("audit", "public", "log", ("id",), "cdc_audit", "", False, ()),
]
DEFS = build_definitions(
    settings=Projections(modules=("cdc.demo.projections",), source="shop"), tables=SHOP, projections=None
)
CRM_DEFS = build_definitions(settings=Projections(), tables=CRM)
MIRROR_CHECKS = {"row_count_matches_postgres", "fresh", "unique_keys", "no_toast_placeholders", "content_parity"}
BLOCKING = {"row_count_matches_postgres", "unique_keys", "no_toast_placeholders", "content_parity"}


def test_dagster_cli_validates_the_definitions_without_a_bridge(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"  # must stay absent: loading opens no store
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path),
        "CDC_STATE_DIR": str(state_dir),
        "CDC_CLICKHOUSE_URL": "http://127.0.0.1:9/",  # nothing listens: the graph has no recorded table
        "CDC_SOURCE_DSN": "postgresql://u:secret@127.0.0.1:9/x",
        "CDC_PROJECTIONS__MODULES": "cdc.demo.projections",
        "CDC_PROJECTIONS__SOURCE": "shop",
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
    assert "cannot read the captured tables" in done.stdout + done.stderr
    assert not state_dir.exists()


def test_nothing_in_the_dagster_project_names_the_demo() -> None:
    for path in sorted((ROOT / "dagster_project").glob("*.py")):
        assert "shop" not in path.read_text().lower(), path


def test_asset_graph_follows_the_captured_tables_of_any_database() -> None:
    specs = {s.key: s for s in CRM_DEFS.resolve_all_asset_specs()}
    expected = {AssetKey(["events", "domain_events"])}
    for t in CRM:
        expected |= {postgres_key(t), topic_key(t), mirror_key(t)}
    assert set(specs) == expected
    lines = CRM[1]  # a name Dagster refuses in a key as it is: the key spells it with "_", the metadata as it is
    assert lines.name == "billing__invoice lines" and lines.topic == "crm.billing.invoice_lines"
    assert mirror_key(lines) == AssetKey(["clickhouse", "crm", "billing__invoice_lines"])
    assert specs[mirror_key(lines)].metadata["dagster/table_name"] == "crm.billing__invoice lines"
    assert {d.asset_key for d in specs[mirror_key(lines)].deps} == {AssetKey(["kafka", "crm.billing.invoice_lines"])}
    assert {d.asset_key for d in specs[postgres_key(lines)].deps} == set()
    # the source without domain events feeds no topic into the event store
    assert {d.asset_key for d in specs[AssetKey(["events", "domain_events"])].deps} == {topic_key(t) for t in CRM[:2]}
    found = {(k.asset_key, k.name) for k in CRM_DEFS.resolve_asset_graph().asset_check_keys}
    expected_checks = {(mirror_key(t), name) for t in CRM for name in MIRROR_CHECKS}
    assert found == expected_checks | {(AssetKey(["events", "domain_events"]), "fresh_crm")}
    # no projection module: no report, no build job, no sensor; the checks still run on a schedule
    assert not [k for k in specs if k.path[0] == "reports"]
    assert [s.name for s in CRM_DEFS.sensors or []] == []
    schedule = CRM_DEFS.resolve_schedule_def("checks")
    assert schedule.default_status.value == "RUNNING" and schedule.cron_schedule == "*/10 * * * *"


def test_asset_graph_of_the_demo_with_its_projection_module() -> None:
    specs = {s.key: s for s in DEFS.resolve_all_asset_specs()}
    expected = {AssetKey(["events", "domain_events"])}
    for t in SHOP_TABLES:
        expected |= {
            AssetKey(["postgres", "shop", t]),
            AssetKey(["kafka", f"shop.public.{t}"]),
            AssetKey(["clickhouse", "shop", t]),
        }
    expected |= {AssetKey(["reports", p.name]) for p in PROJECTIONS}
    assert set(specs) == expected
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
        assert (spec.partitions_def is None) == (not p.daily_partitions)
    blocking = {(k.asset_key, k.name) for k in graph.asset_check_keys if graph.get_check_spec(k).blocking}
    events = AssetKey(["events", "domain_events"])
    assert blocking == {(AssetKey(["clickhouse", "shop", t]), n) for t in SHOP_TABLES for n in BLOCKING} | {
        (events, "upcast_current")
    }
    # the demo's translators declare OrderPlaced v1 and v2: the upcast job lifts stored events
    assert DEFS.resolve_job_def("upcast_events").name == "upcast_events"
    assert "upcast_events" not in {j.name for j in CRM_DEFS.jobs or []}


def test_a_report_is_gated_by_the_checks_of_what_it_reads() -> None:
    gate = build_gate(PROJECTIONS, SHOP, AssetKey(["events", "domain_events"]))
    revenue = {(k.asset_key.path[-1], k.name) for k in gate.upstream["revenue_daily_product"]}
    # products (read directly), orders (OrderDelivered) and order_items (its generic events); not customers
    assert {table for table, _ in revenue} == {"products", "orders", "order_items", "domain_events"}
    assert ("orders", "row_count_matches_postgres") in revenue and ("orders", "fresh") not in revenue
    clv = {k.asset_key.path[-1] for k in gate.upstream["customer_lifetime_value"]}
    assert clv == {"orders", "domain_events"}


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
    hourly = build_definitions(settings=Projections(checks_interval_minutes=120), tables=CRM)
    assert hourly.resolve_schedule_def("checks").cron_schedule == "0 */2 * * *"


def test_projection_modules_are_loaded_like_translators(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "crm_reports.py").write_text(
        "from pipelines.projection import Projection\n"
        "PROJECTIONS = [Projection(name='accounts_by_day', description='d', columns=(('day', 'Date'),"
        " ('n', 'UInt64')), key=('day',), scope='day', scopes_sql='SELECT {lo:DateTime64(6)}, {hi:DateTime64(6)}',"
        " rows_sql='SELECT {scopes:Array(Date)}, {full:Bool}', daily_partitions=True)]\n"
    )
    (tmp_path / "not_reports.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (p,) = load_projections(["crm_reports"], None)
    assert p.name == "accounts_by_day" and p.daily_partitions
    with pytest.raises(ProjectionError, match="declared by crm_reports and by crm_reports"):
        load_projections(["crm_reports", "crm_reports"], None)
    with pytest.raises(ProjectionError, match="declares no projections"):
        load_projections(["not_reports"], None)
    with pytest.raises(ProjectionError, match="cannot import projection module 'no_such_reports'"):
        load_projections(["no_such_reports"], None)
    with pytest.raises(ProjectionError, match=r"\[projections\] source"):
        load_projections(["cdc.demo.projections"], None)
    assert [q.name for q in load_projections(["cdc.demo.projections"], "shop")] == [q.name for q in PROJECTIONS]


def test_projection_settings_from_the_environment_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cdc.toml"
    path.write_text('[projections]\nmodules = ["a.reports"]\nsource = "crm"\nchecks_interval_minutes = 5\n')
    from_file = projection_settings({"CDC_CONFIG": str(path)})
    assert (from_file.modules, from_file.source, from_file.checks_interval_minutes) == (("a.reports",), "crm", 5)
    both = projection_settings({"CDC_CONFIG": str(path), "CDC_PROJECTIONS__MODULES": "b.reports, c.reports"})
    assert both.modules == ("b.reports", "c.reports") and both.source == "crm"
    with pytest.raises(ConfigError, match="checks_interval_minutes"):
        projection_settings({"CDC_PROJECTIONS__CHECKS_INTERVAL_MINUTES": "0"})


def test_source_resource_never_shows_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    resource = SourceResource(dsn="postgresql://shop:s3cret@db:5432/shop")
    assert "s3cret" not in repr(resource) and "s3cret" not in str(resource)
    assert resource.source().dsn.endswith("@db:5432/shop")
    monkeypatch.delenv("CDC_SOURCE_DSN", raising=False)
    with pytest.raises(ConfigError, match="CDC_SOURCE_DSN"):
        SourceResource().source()
    # a source of a cdc.toml is reached through the variable it names, never a DSN in the record
    monkeypatch.setenv("CRM_DSN", "postgresql://crm:t0p@crm-db/crm")
    assert SourceResource().source(CRM[0]).dsn.endswith("@crm-db/crm")
    monkeypatch.delenv("CRM_DSN")
    with pytest.raises(ConfigError, match="CRM_DSN is not set"):
        SourceResource().source(CRM[0])


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


PARITY = {"source": "crm", "table": "public.accounts", "rows_compared": 1200, "ranges_checked": 3,
          "complete_cycle": False, "missing": 0, "extra": 0, "differing": 0, "unsettled": 0,
          "first_range": None, "sample_keys": []}  # fmt: skip


def test_a_parity_report_becomes_a_verdict_whose_drift_is_an_error() -> None:
    ok, drift = quality.content_parity({**PARITY, "result": "ok"})
    assert ok.passed and not drift and ok.metadata["rows_compared"] == 1200
    found, drift = quality.content_parity(
        {
            **PARITY,
            "result": "drift",
            "differing": 2,
            "missing": 1,
            "first_range": {"lower": [501], "upper": [1001]},
            "sample_keys": [[507], [600]],
        }  # fmt: skip
    )
    assert not found.passed and drift
    assert "first differing key range: [501, 1001) (keys 507; 600)" in found.description
    assert "cdc resync public.accounts" in found.description and found.metadata["missing"] == 1
    whole, _ = quality.content_parity(
        {
            **PARITY,
            "result": "drift",
            "extra": 1,
            "first_range": {"lower": None, "upper": None},
            "sample_keys": [[99, "978-0", "2026-01-03"]],
        }  # fmt: skip
    )
    assert "range: the whole table (keys (99, 978-0, 2026-01-03))" in whole.description
    skipped, drift = quality.content_parity({**PARITY, "result": "unsupported", "reason": "varbit cannot be copied"})
    assert not skipped.passed and not drift and "varbit" in skipped.description  # a warning: it cannot gate

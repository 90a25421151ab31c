"""The composition root of the Dagster project: ``dagster-webserver -m dagster_project.definitions``.

Definitions load lazily (``@definitions``), from the configured sources: the tables the bridge records
in ClickHouse (``cdc.captured_tables``, read once per load, through the same connection rules as the
resources), the tables a ``cdc.toml`` names, and the projections of the modules ``[projections]
modules`` names (``CDC_PROJECTIONS__MODULES``). Nothing here names a database: pointed at any
bridge, the graph shows that bridge's tables. After ``cdc add-table``, reload the code location.
"""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from dagster import Definitions, ScheduleDefinition, SensorDefinition, definitions

from cdc import bootstrap
from cdc import settings as config
from cdc.errors import CdcError
from cdc.ports import Warehouse
from cdc.settings import Projections, projection_settings
from dagster_project.assets import lineage_specs, projection_assets
from dagster_project.checks import all_checks
from dagster_project.gate import build_gate
from dagster_project.jobs import checks_job, full_rebuild_job, projections_job, upcast_job
from dagster_project.keys import EVENTS_KEY
from dagster_project.resources import BridgeResource, SourceResource, WarehouseResource
from dagster_project.schedules import checks_schedule, full_rebuild_daily
from dagster_project.sensors import new_events_sensor
from dagster_project.tables import CapturedTable, captured_tables, configured_tables, translator_modules
from pipelines.catalog import load_projections
from pipelines.projection import Projection


def build_definitions(
    resources: Mapping[str, object] | None = None,
    settings: Projections | None = None,
    tables: Sequence[CapturedTable] | None = None,
    projections: Sequence[Projection] | None = None,
) -> Definitions:
    """Everything, wired to ``resources`` (default: the bridge's, from its environment). ``tables`` and
    ``projections`` default to the recorded and configured ones."""
    settings = settings or projection_settings()  # [projections] of the cdc.toml named by CDC_CONFIG, if any
    if tables is None:
        tables = captured_tables(_recording_warehouse, _configured())
    if projections is None:
        sources = sorted({t.source for t in tables})
        source = settings.source or (sources[0] if len(sources) == 1 else None)
        projections = load_projections(settings.modules, source)
    jobs: list[Any] = [checks_job]  # asset jobs resolve when the definitions do
    schedules: list[ScheduleDefinition] = [checks_schedule(settings.checks_interval_minutes)]
    sensors: list[SensorDefinition] = []
    if projections:
        rebuild = full_rebuild_job(projections)
        jobs += [projections_job, rebuild]
        schedules.append(full_rebuild_daily(rebuild))
        sensors.append(new_events_sensor(settings.sensor_interval_seconds))
    modules = translator_modules(tables)
    if modules:
        jobs.append(upcast_job(modules))
    gate = build_gate(projections, tables, EVENTS_KEY)
    return Definitions(
        assets=[*lineage_specs(tables), *projection_assets(projections, gate)],
        asset_checks=all_checks(tables, projections),
        jobs=jobs,
        sensors=sensors,
        schedules=schedules,
        resources=dict(
            resources or {"warehouse": WarehouseResource(), "source": SourceResource(), "bridge": BridgeResource()}
        ),
    )


@contextmanager
def _recording_warehouse() -> Iterator[Warehouse]:
    """ClickHouse, to read what the bridge captures (external URL, else the running bridge's endpoint)."""
    warehouse = bootstrap.served_warehouse(config.load())
    try:
        yield warehouse
    finally:
        warehouse.close()


def _configured() -> list[CapturedTable]:
    try:
        return configured_tables(config.load())
    except CdcError:  # a configuration the bridge itself would refuse: the record alone
        return []


@definitions
def defs() -> Definitions:
    return build_definitions()

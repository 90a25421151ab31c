"""The composition root of the Dagster project: ``dagster-webserver -m dagster_project.definitions``.

Definitions load lazily (``@definitions``): nothing is read at import. Loading them reads the
``[projections]`` settings once and connects to nothing: resources open their connections inside
runs, ticks and checks, through :mod:`cdc.bootstrap`.
"""

from collections.abc import Mapping

from dagster import Definitions, definitions

from cdc.demo import projections as shop
from cdc.settings import Projections, projection_settings
from dagster_project.assets import lineage_specs, projection_assets
from dagster_project.checks import all_checks
from dagster_project.jobs import checks_job, full_rebuild_job, projections_job
from dagster_project.resources import SourceResource, WarehouseResource
from dagster_project.schedules import checks_every_10_minutes, full_rebuild_daily
from dagster_project.sensors import new_events_sensor
from dagster_project.tables import shop_tables


def build_definitions(
    resources: Mapping[str, object] | None = None, settings: Projections | None = None
) -> Definitions:
    """Everything, wired to ``resources`` (default: the bridge's, from its environment)."""
    settings = settings or projection_settings()  # [projections] of the cdc.toml named by CDC_CONFIG, if any
    source = settings.source or shop.SOURCE
    tables = shop_tables(source)
    projections = shop.projections(source)
    rebuild = full_rebuild_job(projections)
    return Definitions(
        assets=[*lineage_specs(tables), *projection_assets(projections)],
        asset_checks=all_checks(tables, source),
        jobs=[projections_job, rebuild, checks_job],
        sensors=[new_events_sensor(settings.sensor_interval_seconds)],
        schedules=[full_rebuild_daily(rebuild), checks_every_10_minutes],
        resources=dict(resources or {"warehouse": WarehouseResource(), "source": SourceResource()}),
    )


@definitions
def defs() -> Definitions:
    return build_definitions()

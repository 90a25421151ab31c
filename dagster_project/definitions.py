"""The composition root of the Dagster project: ``dagster-webserver -m dagster_project.definitions``.

Loading connects to nothing: resources open their connections inside runs, ticks and checks.
"""

from collections.abc import Mapping

from dagster import Definitions

from dagster_project.assets import LINEAGE, PROJECTIONS
from dagster_project.checks import CHECKS
from dagster_project.jobs import checks_job, full_rebuild_job, projections_job
from dagster_project.resources import SourceResource, WarehouseResource
from dagster_project.schedules import checks_every_10_minutes, full_rebuild_daily
from dagster_project.sensors import new_events


def build_definitions(resources: Mapping[str, object] | None = None) -> Definitions:
    """Everything, wired to ``resources`` (default: the bridge's, from its environment)."""
    return Definitions(
        assets=[*LINEAGE, *PROJECTIONS],
        asset_checks=CHECKS,
        jobs=[projections_job, full_rebuild_job, checks_job],
        sensors=[new_events],
        schedules=[full_rebuild_daily, checks_every_10_minutes],
        resources=dict(resources or {"warehouse": WarehouseResource(), "source": SourceResource()}),
    )


defs = build_definitions()

"""Jobs: incremental builds (what the sensor starts), the full rebuild, and the checks.

Runs execute in one process: builds are single ClickHouse statements, so a process per step
would add start-up time and no speed. Build runs carry the tag ``cdc/builds=reports``; the sensor
starts no run while one of them is in progress, and a run-queue limit of 1 on that tag keeps the
scheduled rebuild from overlapping an incremental run.

The full rebuild is an op job rather than an asset job: ``revenue_daily_product`` is partitioned,
which makes any asset job over it partitioned, and a partitioned job applies its fixed run config
(``mode: full``) only to runs of one partition. The op records a materialization per report.
"""

from collections.abc import Sequence

from dagster import (
    AssetMaterialization,
    AssetSelection,
    Failure,
    JobDefinition,
    OpExecutionContext,
    define_asset_job,
    in_process_executor,
    job,
    op,
)

from cdc.events.upcast import upcast_stored
from dagster_project.assets import PROJECTIONS_GROUP, build_metadata, summary
from dagster_project.keys import projection_key
from dagster_project.resources import WarehouseResource
from dagster_project.tables import load_registry
from pipelines.builder import ProjectionBuilder
from pipelines.projection import Projection

BUILDS_TAG = ("cdc/builds", "reports")

projections_job = define_asset_job(
    "projections",
    selection=AssetSelection.groups(PROJECTIONS_GROUP),
    description="Bring every projection up to date incrementally (the new_events sensor starts it).",
    run_tags=dict([BUILDS_TAG]),
    executor_def=in_process_executor,
)


def full_rebuild_job(projections: Sequence[Projection]) -> JobDefinition:
    """The job that rebuilds ``projections`` in full, one after the other."""

    @op(description="Rebuild every projection from the whole event store and swap each in atomically.")
    def rebuild_every_projection(context: OpExecutionContext, warehouse: WarehouseResource) -> None:
        wh = warehouse.warehouse()
        builder = ProjectionBuilder(wh)
        for p in projections:
            result = builder.full(p)
            metadata = build_metadata(wh, p, result)
            context.log.info(summary(p, result, metadata))
            context.log_event(AssetMaterialization(asset_key=projection_key(p), metadata=metadata))

    @job(
        name="full_rebuild",
        run_tags=dict([BUILDS_TAG]),
        executor_def=in_process_executor,
        description="Full build of every projection (reports/*), one after the other.",
    )
    def full_rebuild() -> None:
        rebuild_every_projection()

    return full_rebuild


checks_job = define_asset_job(
    "checks",
    selection=AssetSelection.all_asset_checks(),
    description="Run every asset check: the mirrors' row counts, content parity, freshness, unique keys and "
    "TOAST placeholders, and the event store's.",
    executor_def=in_process_executor,
)


def upcast_job(modules: tuple[str, ...]) -> JobDefinition:
    """``upcast_events``: what ``cdc events upcast`` does, for the translators the sources use."""

    @op(description="Rewrite stored events behind their type's latest version in its latest shape.")
    def upcast_stored_events(context: OpExecutionContext, warehouse: WarehouseResource) -> None:
        result = upcast_stored(
            warehouse.warehouse(),
            load_registry(modules),
            progress=lambda r: context.log.info(f"{r.done} of {r.behind} event(s) behind upcast"),
        )
        for line in result.summary():
            context.log.info(line)
        if result.failures or result.failed:
            raise Failure(
                description=f"{result.failed.total()} event(s) could not be upcast: "
                + "; ".join(f"{f.event_type} v{f.version} {f.event_id}: {f.error}" for f in result.failures[:5])
            )

    @job(
        name="upcast_events",
        executor_def=in_process_executor,
        description="Lift stored events to the latest version of their type (after a new version ships), so "
        "that the reports read every event in its latest shape; the next builds recompute what changed.",
    )
    def upcast_events() -> None:
        upcast_stored_events()

    return upcast_events

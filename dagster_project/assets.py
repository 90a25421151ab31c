"""The asset graph: the capture path as external assets, the projections as materializable ones.

For every captured table of every source: ``postgres/<source>/<table>`` -> ``kafka/<topic>`` ->
``clickhouse/<source>/<table>`` (the mirror), and the change topics of sources with domain events ->
``events/domain_events``. The bridge, not Dagster, keeps those up to date; they are here for lineage
and for the checks that guard them. Each projection is an asset ``reports/<name>`` whose
materialization calls :class:`pipelines.builder.ProjectionBuilder`, once the checks it depends on
(:mod:`dagster_project.gate`) have not failed.

No ``from __future__ import annotations`` here: Dagster reads the annotations of the decorated
functions (config and resource parameters) at definition time.
"""

import datetime as dt
import os
from collections.abc import Sequence
from typing import Literal

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    Config,
    DailyPartitionsDefinition,
    MaterializeResult,
    asset,
)
from pydantic import Field

from cdc.ports import Warehouse
from dagster_project.gate import Gate
from dagster_project.keys import EVENTS_KEY, mirror_key, postgres_key, projection_key, table_key, topic_key
from dagster_project.resources import WarehouseResource
from dagster_project.tables import CapturedTable
from pipelines.builder import BuildResult, ProjectionBuilder
from pipelines.projection import Projection

PROJECTIONS_GROUP = "projections"
# Days before this have no partition; early enough for the demo, settable for older data.
PARTITIONS_START = os.environ.get("CDC_PARTITIONS_START") or "2020-01-01"
DAILY = DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC", end_offset=1)  # today included


def lineage_specs(tables: Sequence[CapturedTable]) -> list[AssetSpec]:
    specs: list[AssetSpec] = []
    for t in tables:
        specs += [
            AssetSpec(
                postgres_key(t),
                group_name="source",
                kinds={"postgres"},
                description=f"Table {t.ref.qualified} of source database {t.source} (captured through the WAL).",
            ),
            AssetSpec(
                topic_key(t),
                deps=[postgres_key(t)],
                group_name="kafka",
                kinds={"kafka"},
                description=f"Debezium change topic of {t.ref.qualified}, keyed by primary key.",
            ),
            AssetSpec(
                mirror_key(t),
                deps=[topic_key(t)],
                group_name="mirrors",
                kinds={"clickhouse"},
                metadata={"dagster/table_name": f"{t.source}.{t.name}"},
                description=f"Current rows of {t.ref.qualified} (view {t.source}.{t.name}; every change in "
                f"{t.source}.{t.name}_changes), kept by the bridge.",
            ),
        ]
    specs.append(
        AssetSpec(
            EVENTS_KEY,
            deps=list(dict.fromkeys(topic_key(t) for t in tables if t.events)),
            group_name="events",
            kinds={"clickhouse"},
            metadata={"dagster/table_name": "events.domain_events"},
            description="The event store: versioned domain events derived from the change topics.",
        )
    )
    return specs


class BuildConfig(Config):
    mode: Literal["incremental", "full"] = Field(
        default="incremental",
        description="incremental: recompute the scopes touched by events stored since the last build "
        "(a partitioned run recomputes its days instead); full: rebuild the whole report and swap it in",
    )


def projection_asset(p: Projection, gate: Gate) -> AssetsDefinition:
    """``reports/<name>``, built by :class:`ProjectionBuilder` unless ``gate`` finds a failed check it
    depends on; a projection with daily partitions rebuilds exactly the days of a run's partitions."""
    partitions = DAILY if p.daily_partitions else None

    @asset(
        key=projection_key(p),
        deps=[EVENTS_KEY, *(table_key(t) for t in p.tables)],
        group_name=PROJECTIONS_GROUP,
        description=p.description,
        kinds={"clickhouse"},
        metadata={"dagster/table_name": p.view, "event_types": ", ".join(p.event_types)},
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run() if partitions else None,
        pool=f"reports.{p.name}",  # builds of one projection must not overlap (a pool limit of 1 enforces it)
    )
    def build(context: AssetExecutionContext, config: BuildConfig, warehouse: WarehouseResource) -> MaterializeResult:  # type: ignore[type-arg]
        gate.enforce(context.instance, p)
        wh = warehouse.warehouse()
        result = _build(ProjectionBuilder(wh), p, context, config.mode)
        metadata = build_metadata(wh, p, result)
        context.log.info(summary(p, result, metadata))
        return MaterializeResult(metadata=metadata)

    return build


def _build(builder: ProjectionBuilder, p: Projection, context: AssetExecutionContext, mode: str) -> BuildResult:
    if mode == "full":
        return builder.full(p)
    if context.has_partition_key:
        return builder.partition(p, dt.date.fromisoformat(context.partition_key))
    if context.has_partition_key_range:
        return builder.rebuild(p, [dt.date.fromisoformat(key) for key in context.partition_keys])
    return builder.incremental(p)


def build_metadata(warehouse: Warehouse, p: Projection, result: BuildResult) -> dict[str, str | int | bool]:
    """What a materialization of ``p`` records: what the build did, and the report's size after it."""
    rows = int(warehouse.query(f"SELECT count() FROM {p.view}")[0][0])
    return {
        "mode": result.mode,
        "skipped": result.skipped,
        "scopes": result.scopes,
        "rows_written": result.rows,
        "tombstones": result.tombstones,
        "watermark": result.watermark.isoformat() if result.watermark else "none",
        "version": result.version if result.version is not None else 0,
        "dagster/row_count": rows,
        "view": p.view,
    }


def summary(p: Projection, result: BuildResult, metadata: dict[str, str | int | bool]) -> str:
    return (
        f"{p.name}: {result.mode} build, {result.scopes} scope(s), {result.rows} row(s) written, "
        f"{result.tombstones} removed; the report has {metadata['dagster/row_count']} row(s)"
    )


def projection_assets(projections: Sequence[Projection], gate: Gate) -> list[AssetsDefinition]:
    return [projection_asset(p, gate) for p in projections]

"""The sensor that starts incremental builds when new events land in the event store.

Its cursor is the newest ``stored_at`` it has seen, as ClickHouse prints it
(``2025-11-24 12:00:00.123456``). A tick requests a ``projections`` run keyed by the new value
when it moved, so one watermark never starts two runs; while a build run is still in progress
it waits (the cursor stays), so builds of one projection never overlap.
"""

from collections.abc import Callable

from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from cdc.errors import CdcError
from cdc.ports import Warehouse
from dagster_project.jobs import BUILDS_TAG, projections_job
from dagster_project.quality import EVENTS, exists
from dagster_project.resources import WarehouseResource

WATERMARK_TAG = "cdc/watermark"
_IN_PROGRESS = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def newest_stored(warehouse: Warehouse) -> str | None:
    """``max(stored_at)`` of the event store as text; None while it is missing or empty."""
    database, _, table = EVENTS.partition(".")
    if not exists(warehouse, database, table):
        return None
    count, newest = warehouse.query(f"SELECT count(), toString(max(stored_at)) FROM {EVENTS}")[0]
    return str(newest) if int(count) else None


def build_in_progress(instance: DagsterInstance) -> str | None:
    """The id of a queued or running build run (incremental or full), if any."""
    records = instance.get_run_records(RunsFilter(tags=dict([BUILDS_TAG]), statuses=_IN_PROGRESS), limit=1)
    return records[0].dagster_run.run_id if records else None


def new_events_sensor(minimum_interval_seconds: int) -> SensorDefinition:
    """``new_events``, ticking at most every ``minimum_interval_seconds`` (``[projections]`` of cdc.toml)."""

    @sensor(
        name="new_events",
        job=projections_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Starts the projections job when the event store's newest stored_at moves.",
    )
    def new_events(context: SensorEvaluationContext, warehouse: WarehouseResource) -> SensorResult | SkipReason:
        return evaluate(context, warehouse.warehouse)

    return new_events


def evaluate(context: SensorEvaluationContext, warehouse: Callable[[], Warehouse]) -> SensorResult | SkipReason:
    """One tick: a run keyed by the newest ``stored_at`` when it moved and no build is in progress."""
    running = build_in_progress(context.instance)
    if running:
        return SkipReason(f"build run {running} is still in progress; new events wait for the next tick")
    try:
        newest = newest_stored(warehouse())
    except CdcError as e:
        return SkipReason(f"cannot read the event store: {e}")
    if newest is None:
        return SkipReason(f"no events stored yet in {EVENTS}")
    if newest == context.cursor:
        return SkipReason(f"no new events since {newest}")
    request = RunRequest(run_key=newest, tags={WATERMARK_TAG: newest})
    return SensorResult(run_requests=[request], cursor=newest)

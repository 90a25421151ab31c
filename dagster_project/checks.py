"""Asset checks on the mirrors and the event store; what they verify lives in ``quality``.

Per mirror ``clickhouse/<source>/<table>``: ``row_count_matches_postgres``, ``fresh``,
``unique_keys``, ``no_toast_placeholders``. On ``events/domain_events``: ``fresh``.
Freshness fails when the newest source commit seen is older than ``CDC_FRESHNESS_SECONDS``
(default 300); it warns rather than errs, since a quiet source is not always a broken bridge.
"""

from collections.abc import Sequence

from dagster import AssetCheckResult, AssetChecksDefinition, AssetCheckSeverity, asset_check

from dagster_project import quality
from dagster_project.assets import EVENTS_KEY, mirror_key
from dagster_project.resources import SourceResource, WarehouseResource
from dagster_project.tables import CapturedTable


def _result(verdict: quality.Verdict, severity: AssetCheckSeverity = AssetCheckSeverity.ERROR) -> AssetCheckResult:
    return AssetCheckResult(
        passed=verdict.passed,
        metadata=dict(verdict.metadata),
        severity=severity,
        description=verdict.description or None,
    )


def mirror_checks(t: CapturedTable) -> list[AssetChecksDefinition]:
    key = mirror_key(t)

    @asset_check(
        asset=key,
        name="row_count_matches_postgres",
        description=f"The mirror has as many rows as {t.ref.qualified} in PostgreSQL.",
    )
    def row_count(warehouse: WarehouseResource, source: SourceResource) -> AssetCheckResult:
        return _result(quality.row_counts(warehouse.warehouse(), source.source(), t))

    @asset_check(asset=key, name="fresh", description="The newest source commit in the change log is recent.")
    def fresh(warehouse: WarehouseResource) -> AssetCheckResult:
        verdict = quality.commit_lag(warehouse.warehouse(), t, quality.freshness_limit())
        return _result(verdict, AssetCheckSeverity.WARN)

    @asset_check(
        asset=key, name="unique_keys", description=f"No ({', '.join(t.key)}) appears twice among the current rows."
    )
    def unique_keys(warehouse: WarehouseResource) -> AssetCheckResult:
        return _result(quality.duplicate_keys(warehouse.warehouse(), t))

    @asset_check(
        asset=key,
        name="no_toast_placeholders",
        description="No text column holds Debezium's __debezium_unavailable_value placeholder.",
    )
    def no_toast_placeholders(warehouse: WarehouseResource) -> AssetCheckResult:
        return _result(quality.toast_placeholders(warehouse.warehouse(), t))

    return [row_count, fresh, unique_keys, no_toast_placeholders]


def events_fresh(source: str) -> AssetChecksDefinition:
    @asset_check(
        asset=EVENTS_KEY,
        name="fresh",
        description=f"The newest event of source {source} was committed at the source recently.",
    )
    def fresh(warehouse: WarehouseResource) -> AssetCheckResult:
        verdict = quality.event_lag(warehouse.warehouse(), source, quality.freshness_limit())
        return _result(verdict, AssetCheckSeverity.WARN)

    return fresh


def all_checks(tables: Sequence[CapturedTable], source: str) -> list[AssetChecksDefinition]:
    return [check for t in tables for check in mirror_checks(t)] + [events_fresh(source)]

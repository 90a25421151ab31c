"""Asset checks on the mirrors, the event store and the reports; what they verify lives in ``quality``.

Per mirror ``clickhouse/<source>/<table>``: ``row_count_matches_postgres``, ``unique_keys``,
``no_toast_placeholders`` and ``content_parity`` (run inside the bridge, as ``cdc verify``) are blocking
(severity ERROR: the reports that read the mirror wait while one fails, :mod:`dagster_project.gate`);
``fresh`` warns. On ``events/domain_events``: ``fresh_<source>`` per source, and (blocking)
``upcast_current`` when translators declare event versions. On each report: ``fresh``. Freshness is
measured against the source's activity (``quality.source_lag``), with the limit ``CDC_FRESHNESS_SECONDS``
(default 300).
"""

from collections.abc import Sequence

from dagster import AssetCheckResult, AssetChecksDefinition, AssetCheckSeverity, asset_check

from cdc.errors import CdcError
from dagster_project import quality
from dagster_project.keys import EVENTS_KEY, mirror_key, projection_key
from dagster_project.resources import BridgeResource, SourceResource, WarehouseResource
from dagster_project.tables import CapturedTable, load_registry, translator_modules
from pipelines.projection import Projection


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
        blocking=True,
        description=f"The mirror has as many rows as {t.ref.qualified} in PostgreSQL.",
    )
    def row_count(warehouse: WarehouseResource, source: SourceResource) -> AssetCheckResult:
        verdict = quality.row_counts(warehouse.warehouse(), source.source(t), t)
        return _result(verdict, AssetCheckSeverity.ERROR if verdict.settled else AssetCheckSeverity.WARN)

    @asset_check(
        asset=key,
        name="fresh",
        description=f"Every change source {t.source} committed before the check is in the mirror within "
        "the limit (an idle table is fresh).",
    )
    def fresh(warehouse: WarehouseResource, source: SourceResource) -> AssetCheckResult:
        verdict = quality.source_lag(warehouse.warehouse(), source.source(t), t, quality.freshness_limit())
        return _result(verdict, AssetCheckSeverity.WARN)

    @asset_check(
        asset=key,
        name="unique_keys",
        blocking=True,
        description=f"No ({', '.join(t.key) or 'key'}) appears twice among the current rows.",
    )
    def unique_keys(warehouse: WarehouseResource) -> AssetCheckResult:
        return _result(quality.duplicate_keys(warehouse.warehouse(), t))

    @asset_check(
        asset=key,
        name="no_toast_placeholders",
        blocking=True,
        description="No text column holds Debezium's __debezium_unavailable_value placeholder.",
    )
    def no_toast_placeholders(warehouse: WarehouseResource) -> AssetCheckResult:
        return _result(quality.toast_placeholders(warehouse.warehouse(), t))

    @asset_check(
        asset=key,
        name="content_parity",
        blocking=True,
        description=f"Every column of {t.ref.qualified} matches PostgreSQL, compared key range by key range "
        "(up to a budget of rows per run, going on where the last run stopped); names the first differing range.",
    )
    def content_parity(bridge: BridgeResource) -> AssetCheckResult:
        try:
            report = bridge.parity(t)
        except CdcError as e:  # no bridge to compare with: a finding about the pipeline, not drift
            return _result(quality.Verdict(False, {}, f"content not compared: {e}"), AssetCheckSeverity.WARN)
        verdict, drift = quality.content_parity(report)
        return _result(verdict, AssetCheckSeverity.ERROR if drift else AssetCheckSeverity.WARN)

    return [row_count, fresh, unique_keys, no_toast_placeholders, content_parity]


def events_fresh(t: CapturedTable) -> AssetChecksDefinition:
    """Freshness of the events of ``t``'s source (any of its tables stands for the source)."""

    @asset_check(
        asset=EVENTS_KEY,
        name=f"fresh_{_identifier(t.source)}",
        description=f"Every change source {t.source} committed before the check has its events stored.",
    )
    def fresh(warehouse: WarehouseResource, source: SourceResource) -> AssetCheckResult:
        verdict = quality.source_lag(warehouse.warehouse(), source.source(t), t, quality.freshness_limit())
        return _result(verdict, AssetCheckSeverity.WARN)

    return fresh


def events_upcast_current(modules: tuple[str, ...]) -> AssetChecksDefinition:
    """No stored event is behind the latest version its translators (``modules``) declare."""

    @asset_check(
        asset=EVENTS_KEY,
        name="upcast_current",
        blocking=True,
        description="Every stored event is in the latest shape of its type (payload_latest), as the reports read it.",
    )
    def upcast_current(warehouse: WarehouseResource) -> AssetCheckResult:
        return _result(quality.upcast_current(warehouse.warehouse(), load_registry(modules)))

    return upcast_current


def report_fresh(p: Projection) -> AssetChecksDefinition:
    @asset_check(
        asset=projection_key(p),
        name="fresh",
        description="No stored event waits longer than the limit (CDC_FRESHNESS_SECONDS) for a build of this report.",
    )
    def fresh(warehouse: WarehouseResource) -> AssetCheckResult:
        verdict = quality.report_lag(warehouse.warehouse(), p.name, quality.freshness_limit())
        return _result(verdict, AssetCheckSeverity.WARN)

    return fresh


def _identifier(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def all_checks(tables: Sequence[CapturedTable], projections: Sequence[Projection] = ()) -> list[AssetChecksDefinition]:
    first = {t.source: t for t in reversed([t for t in tables if t.events])}
    modules = translator_modules(tables)
    return (
        [check for t in tables for check in mirror_checks(t)]
        + [events_fresh(t) for t in first.values()]
        + ([events_upcast_current(modules)] if modules else [])
        + [report_fresh(p) for p in projections]
    )

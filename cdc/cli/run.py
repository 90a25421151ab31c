"""Long-running commands: `cdc demo` and `cdc run` (composition of the bridge with a source)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import SecretStr

from cdc import bootstrap
from cdc.bridge import Bridge
from cdc.cli.console import StatusLine, banner, say
from cdc.demo import shop
from cdc.errors import CdcError, ConfigError
from cdc.mirror.table import mirror_name, quote
from cdc.settings import Settings, SourceSpec, source_specs

if TYPE_CHECKING:
    from cdc.adapters.postgres import PostgresSource
    from cdc.embedded.dagster_ui import DagsterUi
    from cdc.embedded.pg_cluster import EmbeddedPostgres

CATCH_UP_TIMEOUT = 600.0
UI_TIMEOUT = 120.0
DEMO_PROJECTIONS = "cdc.demo.projections"


def _run_until(bridge: Bridge, status: StatusLine, done: Callable[[], bool]) -> None:
    while not done():
        bridge.supervise()
        status.tick()
        time.sleep(0.2)


def start_embedded_postgres(pg: EmbeddedPostgres, settings: Settings) -> bool:
    """Start the embedded cluster; True when this command owns it and must stop it at the end.

    With the embedded warehouse, ``refuse_second_bridge`` already proved no other bridge uses this
    state dir, so a cluster found running is a leftover of a killed run and is ours to stop.
    """
    was_running = pg.is_running()
    pg.start()
    return not was_running or not settings.secret("clickhouse_url")


def demo(settings: Settings, duration: float | None, rate: float, ui: bool = True) -> int:
    bootstrap.refuse_running_bridge(settings)
    pg = bootstrap.embedded_postgres(settings)
    say(f"Starting embedded PostgreSQL (state in {settings.state_dir}) ...")
    started = start_embedded_postgres(pg, settings)
    try:
        pg.create_database(shop.DEMO_DATABASE)
        source = bootstrap.postgres(pg.dsn(shop.DEMO_DATABASE))
        shop.install(source)
        return _demo_bridge(settings, source, pg, duration, rate, ui)
    finally:
        if started:
            pg.stop()


def ui_env(settings: Settings, clickhouse_url: str, source_dsn: str = "", **extra: str) -> dict[str, str]:
    """What the Dagster processes need beside the inherited environment (``CDC_CONFIG``, the sources'
    DSN variables): the state dir, the ClickHouse to read and, for a single source, its DSN."""
    env = {"CDC_STATE_DIR": str(settings.state_dir), "CDC_CLICKHOUSE_URL": clickhouse_url, **extra}
    if source_dsn:
        env["CDC_SOURCE_DSN"] = source_dsn
    if settings.config is not None:
        env["CDC_CONFIG"] = str(settings.config)
    return env


def start_ui(settings: Settings, env: dict[str, str]) -> DagsterUi | None:
    """The Dagster webserver and daemon for the bridge ``env`` describes; None (with a warning) if they
    do not come up."""
    ui = bootstrap.dagster_ui(settings, env)
    say("Starting the Dagster webserver and daemon ...")
    ui.start()
    if ui.wait_ready(UI_TIMEOUT):
        return ui
    why = ui.diagnosis()
    ui.stop()
    say(
        f"warning: the Dagster UI did not come up within {UI_TIMEOUT:.0f} s ({why}); see "
        f"{settings.log_dir}/dagster-*.log (the bridge runs on without it)"
    )
    return None


def serve_ui(settings: Settings, projections: tuple[str, ...]) -> int:
    """`cdc ui`: the Dagster UI for the bridge running on the state dir (or the external ClickHouse),
    in the foreground until Ctrl-C."""
    url = bootstrap.clickhouse_endpoint(settings)
    if not url:
        raise ConfigError(
            f"no bridge runs on state dir {settings.state_dir} and CDC_CLICKHOUSE_URL is unset: start "
            "`cdc run --ui` (or `cdc run`, then `cdc ui`), or point CDC_CLICKHOUSE_URL at your ClickHouse"
        )
    serving = bootstrap.running_dagster_ui(settings)
    if serving:
        say(f"Dagster UI: {serving} (already running for state dir {settings.state_dir})")
        return 0
    extra = {"CDC_PROJECTIONS__MODULES": ",".join(projections)} if projections else {}
    ui = start_ui(settings, ui_env(settings, url, settings.secret("source_dsn"), **extra))
    if ui is None:
        return 1
    say(f"Dagster UI: {ui.url}  (Ctrl-C stops it; the bridge keeps running)")
    try:
        while ui.running():
            time.sleep(1.0)
        say(f"the Dagster UI stopped: {ui.diagnosis()}")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        ui.stop()


def _demo_bridge(
    settings: Settings,
    source: PostgresSource,
    pg: EmbeddedPostgres,
    duration: float | None,
    rate: float,
    ui_wanted: bool = True,
) -> int:
    spec = SourceSpec(
        SecretStr(source.dsn),
        shop.DEMO_DATABASE,
        shop.DEMO_TABLES,
        initial_load=settings.initial_load,
        snapshot_events=settings.snapshot_events,
        outbox_tables=shop.DEMO_OUTBOX,
    )
    os.environ.setdefault("CDC_PROJECTIONS__MODULES", DEMO_PROJECTIONS)  # the reports an erasure rebuilds
    bridge = bootstrap.build_bridge(settings, [spec], say)
    say("Starting Kafka (Tansu), ClickHouse (chDB) and Debezium ...")
    bridge.start()
    load = shop.LoadGenerator(source, rate)
    status = StatusLine(bridge)
    ui: DagsterUi | None = None
    try:
        env = ui_env(
            settings,
            bridge.clickhouse_url,
            source.dsn,
            CDC_SOURCE_NAME=bridge.name,
            CDC_PROJECTIONS__MODULES=DEMO_PROJECTIONS,
            CDC_PROJECTIONS__SOURCE=bridge.name,
        )
        ui = start_ui(settings, env) if ui_wanted else None
        banner(
            bridge,
            ([f"Dagster UI:          {ui.url}"] if ui else [])
            + [
                f"PostgreSQL:          {bootstrap.redact_dsn(pg.dsn(shop.DEMO_DATABASE))}",
                'Try:                 cdc sql "SELECT status, count() FROM shop.orders GROUP BY status"',
                '                     cdc sql "SELECT event_type, count() FROM events.domain_events'
                ' GROUP BY event_type"',
                "                     cdc events replay order 1",
                "Generating shop traffic" + (f" for {duration:.0f} s" if duration else "; Ctrl-C stops"),
            ],
        )
        load.start()
        deadline = time.monotonic() + duration if duration else float("inf")
        _run_until(bridge, status, lambda: time.monotonic() >= deadline)
        load.stop()
        status.end()
        code = _verify(bridge, source, status)
        if ui is not None and code == 0:
            say(_wait_for_reports(bridge, UI_TIMEOUT))
        return code
    except KeyboardInterrupt:
        status.end()
        say("Stopping (ClickHouse first stores what was captured; the rest stays in the slot) ...")
        return 0
    finally:
        load.stop()
        if ui is not None:
            ui.stop()
        bridge.stop()


_NEWEST_STORED = "SELECT toUnixTimestamp64Micro(max(stored_at)) FROM events.domain_events"
_REPORTS_CAUGHT_UP = (
    "SELECT count(), countIf(toUnixTimestamp64Micro(mark) >= {target:Int64})"
    " FROM (SELECT projection, max(watermark) AS mark FROM reports._watermarks GROUP BY projection)"
)


def _wait_for_reports(bridge: Bridge, timeout: float) -> str:
    """Eventual consistency, visible: wait until Dagster's sensor runs have built every report up to
    the events stored when the load stopped (the demo's check passes without it; this line says how
    far they got). Events still come after that: deadlines of orders left open pass on the source's
    clock. Every report must have been built at least once: a sensor run may build some before others."""
    from cdc.demo.projections import projections

    expected = len(projections(bridge.name))  # the demo's UI reads DEMO_PROJECTIONS
    deadline = time.monotonic() + timeout
    built, current, target = 0, 0, None
    while time.monotonic() < deadline:
        with contextlib.suppress(CdcError):  # no report built yet
            if target is None:
                target = int(bridge.warehouse.query(_NEWEST_STORED)[0][0])
            params = {"target": target}
            built, current = (int(v) for v in bridge.warehouse.query(_REPORTS_CAUGHT_UP, params)[0])
        if built >= expected and current == built:
            return f"reports built by Dagster: {built}, all up to the events stored when the load stopped"
        time.sleep(1.0)
    return (
        f"warning: after {timeout:.0f} s Dagster had brought {current} of {expected} report(s) up to date (see the UI)"
    )


def _verify(bridge: Bridge, source: PostgresSource, status: StatusLine) -> int:
    say("Load stopped; waiting until ClickHouse has caught up ...")
    if not bridge.wait_caught_up(source.current_wal_lsn(), CATCH_UP_TIMEOUT, status.tick):
        status.end()
        say(f"not caught up within {CATCH_UP_TIMEOUT:.0f} s")
        return 1
    status.tick(force=True)
    status.end()
    differ = 0
    say(f"{'table':<24}{'postgres':>12}{'clickhouse':>12}")
    for schema in bridge.primary.schemas:
        pg_rows = source.query(f"SELECT count(*) FROM {schema.ref.schema}.{schema.ref.table}")[0][0]
        ch_rows = bridge.warehouse.query(f"SELECT count() FROM {quote(bridge.name)}.{quote(mirror_name(schema.ref))}")
        n = int(ch_rows[0][0])
        mark = "" if n == pg_rows else "   <-- differs"
        differ += n != pg_rows
        say(f"{schema.ref.qualified:<24}{pg_rows:>12,}{n:>12,}{mark}")
    say("all tables match" if not differ else f"{differ} table(s) differ")
    return 0 if not differ else 1


def run(settings: Settings, until_caught_up: bool, timeout: float, ui: bool = False) -> int:
    bootstrap.refuse_running_bridge(settings)
    pg: EmbeddedPostgres | None = None
    started = False
    dsn = settings.secret("source_dsn")
    if not dsn and not settings.source:
        pg = bootstrap.embedded_postgres(settings)
        if not (pg.data_dir / "PG_VERSION").exists():
            raise ConfigError(
                "no source: pass --source DSN or set CDC_SOURCE_DSN, or name sources in a cdc.toml "
                "(--config); or run `cdc demo` once to create the embedded shop database"
            )
        started = start_embedded_postgres(pg, settings)
        dsn = pg.dsn(shop.DEMO_DATABASE)
    try:
        return _run_bridge(settings, source_specs(settings, dsn), until_caught_up, timeout, ui)
    finally:
        if pg is not None and started:
            pg.stop()


def run_preflight(specs: tuple[SourceSpec, ...]) -> None:
    """`cdc preflight`'s checks for every source; refuse to start on a blocking problem, saying why."""
    for spec in specs:
        dsn = spec.dsn.get_secret_value()
        where = bootstrap.redact_dsn(dsn)
        report = bootstrap.preflight(dsn, spec.tables or None, spec.name)
        if report.blocking:
            problems = "; ".join(f"{f.message} (fix: {f.fix})" for f in report.blocking)
            raise ConfigError(f"{where} is not ready for the bridge: {problems}. `cdc preflight` lists every finding")
        if report.warnings:
            say(f"preflight: {len(report.warnings)} warning(s) for {where}; `cdc preflight DSN` explains each")


def _run_bridge(
    settings: Settings, specs: tuple[SourceSpec, ...], until_caught_up: bool, timeout: float, ui_wanted: bool = False
) -> int:
    run_preflight(specs)
    bridge = bootstrap.build_bridge(settings, specs, say)
    targets = [c.source.current_wal_lsn() if until_caught_up else 0 for c in bridge.captures]
    bridge.start()
    status = StatusLine(bridge)
    ui: DagsterUi | None = None
    try:
        if ui_wanted:
            single = specs[0].dsn.get_secret_value() if len(specs) == 1 and not specs[0].dsn_env else ""
            ui = start_ui(settings, ui_env(settings, bridge.clickhouse_url, single))
        banner(
            bridge,
            ([f"Dagster UI:          {ui.url}"] if ui else [])
            + [f"PostgreSQL:          {c.name}: {c.where}" for c in bridge.captures],
        )
        if until_caught_up:
            by_source = {c.name: t for c, t in zip(bridge.captures, targets, strict=True)}
            ok = bridge.wait_caught_up(by_source, timeout, status.tick)
            status.tick(force=True)
            status.end()
            say("caught up" if ok else f"not caught up within {timeout:.0f} s")
            return 0 if ok else 1
        _run_until(bridge, status, lambda: False)
        return 0
    except KeyboardInterrupt:
        status.end()
        say("Stopping (ClickHouse first stores what was captured; the rest stays in the slot) ...")
        return 0
    finally:
        if ui is not None:
            ui.stop()
        bridge.stop()

"""Long-running commands: `cdc demo` and `cdc run` (composition of the bridge with a source)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable

from cdc.adapters.postgres import PostgresSession, PostgresSource, redact_dsn
from cdc.bridge import Bridge
from cdc.bridge import refuse_second_bridge as refuse_on_state_dir
from cdc.config import SourceSpec
from cdc.demo import shop
from cdc.embedded.dagster_ui import DagsterUi
from cdc.embedded.pg_cluster import EmbeddedPostgres
from cdc.errors import CdcError, ConfigError
from cdc.mirror.table import mirror_name, quote
from cdc.settings import PortBook, Settings

CATCH_UP_TIMEOUT = 600.0
UI_TIMEOUT = 120.0


def say(text: str) -> None:
    print(text, flush=True)


def embedded_postgres(settings: Settings) -> EmbeddedPostgres:
    data_dir = settings.state_dir / "postgres" / "data"
    running = (data_dir / "postmaster.pid").exists()
    port = PortBook(settings.state_dir).port("postgres", busy_ok=running)
    return EmbeddedPostgres(data_dir, port, settings.log_dir / "postgres.log")


class StatusLine:
    """One live line on a terminal (a line every 10 s otherwise): captured, applied, rate, lag, freshness."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.tty = sys.stdout.isatty()
        self._last = (time.monotonic(), 0)
        self._printed = 0.0
        self._dead: tuple[float, int | None] = (0.0, 0)

    def tick(self, force: bool = False) -> None:
        self.bridge.observer.sample()
        now = time.monotonic()
        if not force and now - self._printed < (1.0 if self.tty else 10.0):
            return
        services = self.bridge.services
        applied = sum(s.stats.messages for s in services)
        captured = self.bridge.records_produced
        then, before = self._last
        rate = (applied - before) / max(now - then, 1e-6)
        self._last, self._printed = (now, applied), now
        lag = sum(max(0, end - s.stats.committed.get(tp, 0)) for s in services for tp, end in s.stats.highwater.items())
        newest = max((s.stats.last_captured_ms for s in services), default=0)
        fresh = "-" if not newest else f"{max(0.0, time.time() - newest / 1000):.1f}s"
        if now - self._dead[0] >= 5.0:
            self._dead = (now, self.bridge.dead_letter_count())
        dead = "?" if self._dead[1] is None else f"{self._dead[1]:,}"
        reports = [c.events_report for c in self.bridge.captures if c.events_report is not None]
        events = f" | events {sum(r.stored for r in reports):,}" if reports else ""
        line = (
            f"{time.strftime('%H:%M:%S')} captured {captured:,} | applied {applied:,} ({rate:,.0f}/s)"
            f"{events} | lag {lag:,} | last change {fresh} ago | dead letters {dead}"
        )
        if self.bridge.consumer_error:
            line += f" | retrying: {self.bridge.consumer_error[:80]}"
        print(("\r" + line.ljust(120)) if self.tty else line, end="" if self.tty else "\n", flush=True)

    def end(self) -> None:
        if self.tty:
            print(flush=True)


def _banner(bridge: Bridge, extra: list[str]) -> None:
    say(f"ClickHouse endpoint: {bridge.clickhouse_url}")
    say(f"Kafka bootstrap:     {bridge.bootstrap}")
    say(f"Status and metrics:  {bridge.status_url}/status, {bridge.status_url}/metrics (or: cdc status)")
    for line in extra:
        say(line)
    tables = [c.name + "." + mirror_name(s.ref) for c in bridge.captures for s in c.schemas]
    say(f"Mirrored tables:     {', '.join(tables)}")


def _run_until(bridge: Bridge, status: StatusLine, done: Callable[[], bool]) -> None:
    while not done():
        bridge.check()
        status.tick()
        time.sleep(0.2)


def refuse_second_bridge(settings: Settings) -> None:
    """Fail before touching anything (such as the embedded Postgres) another bridge uses."""
    if not settings.clickhouse_url:
        refuse_on_state_dir(settings.state_dir)


def start_embedded_postgres(pg: EmbeddedPostgres, settings: Settings) -> bool:
    """Start the embedded cluster; True when this command owns it and must stop it at the end.

    With the embedded warehouse, ``refuse_second_bridge`` already proved no other bridge uses this
    state dir, so a cluster found running is a leftover of a killed run and is ours to stop.
    """
    was_running = pg.is_running()
    pg.start()
    return not was_running or not settings.clickhouse_url


def demo(settings: Settings, duration: float | None, rate: float, ui: bool = True) -> int:
    refuse_second_bridge(settings)
    pg = embedded_postgres(settings)
    say(f"Starting embedded PostgreSQL (state in {settings.state_dir}) ...")
    started = start_embedded_postgres(pg, settings)
    try:
        pg.create_database(shop.DEMO_DATABASE)
        source = PostgresSource(pg.dsn(shop.DEMO_DATABASE))
        shop.install_schema(source)
        with PostgresSession(source) as session:
            shop.seed(session)
        return _demo_bridge(settings, source, pg, duration, rate, ui)
    finally:
        if started:
            pg.stop()


def start_ui(settings: Settings, bridge: Bridge, source_dsn: str) -> DagsterUi | None:
    """The Dagster webserver and daemon over the running bridge; None (with a warning) if they do not come up."""
    port = PortBook(settings.state_dir).port("dagster")
    ui = DagsterUi(
        port,
        settings.state_dir,
        {
            "CDC_STATE_DIR": str(settings.state_dir),
            "CDC_CLICKHOUSE_URL": bridge.clickhouse_url,
            "CDC_SOURCE_DSN": source_dsn,
            "CDC_SOURCE_NAME": bridge.name,
        },
    )
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


def _demo_bridge(
    settings: Settings,
    source: PostgresSource,
    pg: EmbeddedPostgres,
    duration: float | None,
    rate: float,
    ui_wanted: bool = True,
) -> int:
    bridge = Bridge(settings, SourceSpec(source.dsn, shop.DEMO_DATABASE, shop.DEMO_TABLES), say)
    say("Starting Kafka (Tansu), ClickHouse (chDB) and Debezium ...")
    bridge.start()
    load = shop.LoadGenerator(source, rate)
    status = StatusLine(bridge)
    ui: DagsterUi | None = None
    try:
        ui = start_ui(settings, bridge, source.dsn) if ui_wanted else None
        _banner(
            bridge,
            ([f"Dagster UI:          {ui.url}"] if ui else [])
            + [
                f"PostgreSQL:          {redact_dsn(pg.dsn(shop.DEMO_DATABASE))}",
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
        say("Stopping (draining what is already in Kafka) ...")
        return 0
    finally:
        load.stop()
        if ui is not None:
            ui.stop()
        bridge.stop()


_REPORTS_CAUGHT_UP = (
    "SELECT count(), countIf(mark >= (SELECT max(stored_at) FROM events.domain_events))"
    " FROM (SELECT projection, max(watermark) AS mark FROM reports._watermarks GROUP BY projection)"
)


def _wait_for_reports(bridge: Bridge, timeout: float) -> str:
    """Eventual consistency, visible: wait until Dagster's sensor runs have built every report up to
    the newest stored event (the demo's check passes without it; this line says how far they got).
    Every report must have been built at least once: a sensor run may build some before others."""
    from pipelines.shop import projections

    expected = len(projections(bridge.name))
    deadline = time.monotonic() + timeout
    built, current = 0, 0
    while time.monotonic() < deadline:
        with contextlib.suppress(CdcError):  # no report built yet
            built, current = (int(v) for v in bridge.warehouse.query(_REPORTS_CAUGHT_UP)[0])
        if built >= expected and current == built:
            return f"reports built by Dagster: {built}, all up to the newest event"
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
    for schema in bridge.schemas:
        pg_rows = source.query(f"SELECT count(*) FROM {schema.ref.schema}.{schema.ref.table}")[0][0]
        ch_rows = bridge.warehouse.query(f"SELECT count() FROM {quote(bridge.name)}.{quote(mirror_name(schema.ref))}")
        n = int(ch_rows[0][0])
        mark = "" if n == pg_rows else "   <-- differs"
        differ += n != pg_rows
        say(f"{schema.ref.qualified:<24}{pg_rows:>12,}{n:>12,}{mark}")
    say("all tables match" if not differ else f"{differ} table(s) differ")
    return 0 if not differ else 1


def run(settings: Settings, until_caught_up: bool, timeout: float) -> int:
    refuse_second_bridge(settings)
    pg: EmbeddedPostgres | None = None
    started = False
    dsn = settings.source_dsn
    if not dsn and not settings.sources:
        pg = embedded_postgres(settings)
        if not (pg.data_dir / "PG_VERSION").exists():
            raise ConfigError(
                "no source: pass --source DSN or set CDC_SOURCE_DSN, or name sources in a cdc.toml "
                "(--config); or run `cdc demo` once to create the embedded shop database"
            )
        started = start_embedded_postgres(pg, settings)
        dsn = pg.dsn(shop.DEMO_DATABASE)
    try:
        return _run_bridge(settings, settings.source_specs(dsn or ""), until_caught_up, timeout)
    finally:
        if pg is not None and started:
            pg.stop()


def run_preflight(specs: tuple[SourceSpec, ...]) -> None:
    """`cdc preflight`'s checks for every source; refuse to start on a blocking problem, saying why."""
    from cdc import preflight

    for spec in specs:
        report = preflight.check(spec.dsn, spec.tables or None, spec.name)
        if report.blocking:
            problems = "; ".join(f"{f.message} (fix: {f.fix})" for f in report.blocking)
            raise ConfigError(
                f"{redact_dsn(spec.dsn)} is not ready for the bridge: {problems}. `cdc preflight` lists every finding"
            )
        if report.warnings:
            say(
                f"preflight: {len(report.warnings)} warning(s) for {redact_dsn(spec.dsn)}; "
                "`cdc preflight DSN` explains each"
            )


def _run_bridge(settings: Settings, specs: tuple[SourceSpec, ...], until_caught_up: bool, timeout: float) -> int:
    run_preflight(specs)
    bridge = Bridge(settings, specs, say)
    targets = [PostgresSource(spec.dsn).current_wal_lsn() if until_caught_up else 0 for spec in specs]
    bridge.start()
    status = StatusLine(bridge)
    try:
        _banner(bridge, [f"PostgreSQL:          {c.name}: {redact_dsn(c.spec.dsn)}" for c in bridge.captures])
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
        say("Stopping (draining what is already in Kafka) ...")
        return 0
    finally:
        bridge.stop()

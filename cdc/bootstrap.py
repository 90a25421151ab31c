"""The composition root: the one place that builds adapters and embedded processes from settings.

Everything else receives its collaborators: the :class:`~cdc.bridge.Bridge` and each
:class:`~cdc.capture.SourceCapture` get wiring built here, the events worker process opens its
lane through :func:`open_events_lane`, the short CLI commands and Dagster's resources ask here for
a warehouse, a source or a publisher. Secrets (``SecretStr`` settings) are unwrapped only here,
at the moment an adapter needs them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from cdc.adapters.clickhouse import ClickHouseWarehouse, connect_warehouse, open_embedded, redact_url, warm_up
from cdc.adapters.kafka import KafkaChangeStream, KafkaPublisher, ensure_topics, truncate_topics
from cdc.adapters.postgres import PostgresSource
from cdc.adapters.postgres import redact_dsn as _redact_dsn
from cdc.adapters.postgres_facts import read_preflight_facts
from cdc.bridge import Bridge
from cdc.capture import SourceCapture
from cdc.consume.dead_letters import DeadLetters
from cdc.consume.loop import ConsumerService
from cdc.debezium.config import ConnectorSettings, embedded_properties
from cdc.debezium.gate import DurabilityGate
from cdc.domain.events import EventDefinitionError, EventRegistry, load_modules
from cdc.embedded.broker import TansuBroker
from cdc.embedded.dagster_ui import DagsterUi
from cdc.embedded.endpoint import find_endpoint
from cdc.embedded.net import LOOPBACK, PortBook
from cdc.embedded.pg_cluster import EmbeddedPostgres
from cdc.embedded.warehouse import EmbeddedWarehouse, refuse_second_bridge
from cdc.errors import ConfigError, StackError, WarehouseError
from cdc.events.deadlines import open_deadlines
from cdc.events.lane import EventsLane
from cdc.events.reports import WorkerConfig
from cdc.events.requests import ErasureRequests
from cdc.events.sink import Authoring, DomainEventSink
from cdc.events.store import ClickHouseEventStore
from cdc.events.worker import EventsWorkers
from cdc.mirror.sink import ClickHouseMirrorSink
from cdc.ports import Warehouse
from cdc.preflight import Report, assess
from cdc.settings import Settings, SourceSpec, projection_settings
from cdc.statedir import mask_salt, remember_translators, remembered_translators
from cdc.status.server import MetricsServer
from cdc.wiring import BridgeWiring, CaptureOptions, CaptureRunner, CaptureWiring, Service

Say = Callable[[str], None]


class _Nothing:
    """An external service: the bridge has nothing to start or stop."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def is_running(self) -> bool:
        return True  # not ours to watch: its clients report its outages


# -- the bridge ------------------------------------------------------------------------------------
def build_bridge(settings: Settings, specs: Sequence[SourceSpec], say: Say = print) -> Bridge:
    """The bridge for ``specs``, with the embedded parts wherever the settings name no external one."""
    ports = PortBook(settings.state_dir)
    clickhouse_url = settings.secret("clickhouse_url")
    warehouse: Service
    if clickhouse_url:
        warehouse, where = _Nothing(), (lambda: clickhouse_url)
    else:
        embedded = EmbeddedWarehouse(settings.state_dir, ports.port("clickhouse"))
        warehouse, where = embedded, (lambda: embedded.url)
    broker: Service
    if settings.kafka_bootstrap_servers:
        external = settings.kafka_bootstrap_servers
        broker, bootstrap = _Nothing(), (lambda: external)
    else:
        tansu = TansuBroker(ports.port("kafka"), settings.log_dir / "tansu.log")
        broker, bootstrap = tansu, (lambda: tansu.bootstrap_servers)
    wiring = BridgeWiring(
        state_dir=settings.state_dir,
        warehouse=warehouse,
        warehouse_url=where,
        warehouse_client=lambda: _warehouse_client(settings, clickhouse_url),
        broker=broker,
        bootstrap=bootstrap,
        ensure_topics=ensure_topics,
        publisher=KafkaPublisher,
        prepare_event_store=_prepare_event_store,
        status_server=lambda snapshot, thresholds, actions: MetricsServer(
            ports.port("status"), snapshot, thresholds, publish_to=settings.state_dir, actions=actions
        ),
        remember_translators=partial(remember_translators, settings.state_dir),
        mask_salt=lambda: mask_salt(settings.state_dir, settings.salt_env).get_secret_value(),
        max_retained_wal_bytes=settings.max_retained_wal_bytes,
        redact=redact_url,
        truncate_topics=None if settings.kafka_bootstrap_servers else truncate_topics,
        broker_buffer_records=settings.guardrails.broker_buffer_records,
        change_partitions=settings.events_workers,
        rebuild_reports=rebuild_reports,
    )
    return Bridge(wiring, [source_capture(settings, spec, say) for spec in specs], say)


log = logging.getLogger(__name__)


def rebuild_reports(warehouse: Warehouse, source: str) -> list[str]:
    """Every report of ``[projections] modules`` over ``source``, built in full from what the store and the
    mirrors hold now (after an erasure); their names. A module that cannot be loaded rebuilds nothing."""
    from pipelines.builder import ProjectionBuilder
    from pipelines.catalog import load_projections
    from pipelines.projection import ProjectionError

    modules = projection_settings().modules
    try:
        reports = load_projections(modules, source)
    except ProjectionError as e:
        log.warning("reports not rebuilt after an erasure: %s", e)
        return []
    builder = ProjectionBuilder(warehouse)
    for p in reports:
        builder.full(p)
    return [p.name for p in reports]


def _prepare_event_store(warehouse: Warehouse) -> None:
    ClickHouseEventStore(warehouse)  # creates the store's tables


def _warehouse_client(settings: Settings, url: str) -> ClickHouseWarehouse:
    warm_up()
    return connect_warehouse(url, settings.state_dir) if url else open_embedded(settings.state_dir)


def source_capture(settings: Settings, spec: SourceSpec, say: Say) -> SourceCapture:
    dsn = spec.dsn.get_secret_value()
    wiring = CaptureWiring(
        mirror_sink=ClickHouseMirrorSink,
        change_stream=KafkaChangeStream,
        runner=partial(_runner, settings),
        events_worker=lambda config: EventsWorkers(config, open_events_lane, settings.events_workers),
        event_sink=lambda registry, catalog, publisher, warehouse: DomainEventSink(
            registry,
            catalog,
            publisher,
            ClickHouseEventStore(warehouse),
            spec.snapshot_events,
            Authoring(frozenset(spec.outbox_tables), spec.outbox_prefix),
        ),
    )
    options = CaptureOptions(
        state_dir=settings.state_dir,
        translators=settings.translators,
        events=settings.events,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        max_in_flight=settings.guardrails.max_in_flight_records,
        worker_dsn=dsn,
        mirror_batch_wait_ms=settings.guardrails.mirror_batch_wait_ms,
        events_workers=settings.events_workers,
    )
    return SourceCapture(spec, PostgresSource(dsn), wiring, options, say)


def _runner(settings: Settings, conn: ConnectorSettings, bootstrap: str, gate: DurabilityGate) -> CaptureRunner:
    connect_url = settings.secret("kafka_connect_url")
    if connect_url:  # the same connector config, run by Kafka Connect
        from cdc.debezium.kafka_connect import KafkaConnectRunner

        return KafkaConnectRunner(connect_url, conn)
    from cdc.debezium.engine import DebeziumRunner  # the JVM only where Debezium runs embedded

    return DebeziumRunner(embedded_properties(conn), bootstrap, settings.log_dir / "debezium.log", gate=gate)


# -- the events worker process ----------------------------------------------------------------------
def open_events_lane(config: WorkerConfig) -> EventsLane:
    """The domain-event lane, composed inside the worker process from what the bridge sent it."""
    try:
        registry = load_modules(config.translators)
    except EventDefinitionError as e:
        raise ConfigError(f"translators: {e}") from e
    warehouse = connect_warehouse(config.clickhouse_url, Path(config.state_dir))
    publisher = KafkaPublisher(config.bootstrap, f"cdc-events-{config.source}")
    # smaller batches and fetches than the mirror's: a batch's events are Python objects (~10x the
    # message), and a source may run several workers
    stream = KafkaChangeStream(
        config.bootstrap,
        config.group or f"cdc-events-{config.source}",
        config.topics + ((config.message_topic,) if config.message_topic else ()),
        max_partition_fetch_bytes=2 * 1024 * 1024,
    )
    store = ClickHouseEventStore(warehouse)
    authoring = Authoring(frozenset(config.outbox_tables), config.outbox_prefix)
    deadlines = open_deadlines(warehouse, registry) if registry.deadlines else None
    requests = ErasureRequests(warehouse) if any(r.on_delete for r in registry.erasures.values()) else None
    sink = DomainEventSink(
        registry,
        PostgresSource(config.source_dsn),
        publisher,
        store,
        config.snapshot_events,
        authoring,
        deadlines,
        requests,
    )
    service = ConsumerService(stream, sink, DeadLetters(warehouse, publisher), "events", max_records=4000)
    return EventsLane(service, sink, stream, publisher, warehouse)


# -- short commands -----------------------------------------------------------------------------------
def warehouse(settings: Settings) -> ClickHouseWarehouse:
    """ClickHouse for a short command: the external server, else the running bridge's endpoint, else
    the embedded store itself."""
    return connect_warehouse(settings.secret("clickhouse_url") or None, settings.state_dir)


def served_warehouse(settings: Settings, in_process: bool = False) -> ClickHouseWarehouse:
    """ClickHouse for a long-lived process such as Dagster's: the external server, else the running
    bridge's endpoint. It opens the embedded store itself only with ``in_process`` (tests, one-off
    runs): chDB admits one process per store, and holding it would keep the bridge from starting."""
    url = clickhouse_endpoint(settings) or ""
    if url:
        return connect_warehouse(url, settings.state_dir)
    if in_process:
        return open_embedded(settings.state_dir)
    raise WarehouseError(
        f"no ClickHouse to reach: CDC_CLICKHOUSE_URL is unset and no bridge serves the "
        f"embedded store of {settings.state_dir}; start `cdc run` (or `cdc demo`) with that state dir"
    )


def clickhouse_endpoint(settings: Settings) -> str | None:
    """The external ClickHouse's URL, else the endpoint of the bridge running on the state dir."""
    return settings.secret("clickhouse_url") or find_endpoint(settings.state_dir)


def redact_dsn(dsn: str) -> str:
    """A DSN safe to print: the password removed by libpq's own parsing rules."""
    return _redact_dsn(dsn)


def postgres(dsn: str, read_only: bool = False) -> PostgresSource:
    return PostgresSource(dsn, read_only=read_only)


def registry(settings: Settings, modules: tuple[str, ...] = (), required: bool = True) -> EventRegistry:
    """Translator modules given, else CDC_TRANSLATORS, else what the last bridge on this state dir used."""
    modules = modules or settings.translators or remembered_translators(settings.state_dir)
    if not modules and required:
        raise ConfigError("no translator modules: pass --translators my_pkg.events (or set CDC_TRANSLATORS)")
    try:
        return load_modules(modules)
    except EventDefinitionError as e:
        raise ConfigError(str(e)) from e


def running_broker(settings: Settings) -> str:
    """The bootstrap servers of the external Kafka, else of the bridge running on the state dir."""
    if settings.kafka_bootstrap_servers:
        return settings.kafka_bootstrap_servers
    if not find_endpoint(settings.state_dir):
        raise StackError(
            f"no bridge is running on state dir {settings.state_dir}: start `cdc run` or `cdc demo` "
            "first (replayed dead letters go back through its consumers), or set "
            "CDC_KAFKA_BOOTSTRAP_SERVERS"
        )
    return f"{LOOPBACK}:{PortBook(settings.state_dir).port('kafka', busy_ok=True)}"


def publisher(bootstrap: str, client_id: str) -> KafkaPublisher:
    return KafkaPublisher(bootstrap, client_id)


def preflight(dsn: str, tables: Sequence[str] | None = None, source_name: str | None = None) -> Report:
    """`cdc preflight`: read the facts in one read-only session (changes nothing) and judge them.

    Raises :class:`cdc.errors.SourceError` when the database cannot be reached.
    """
    facts = read_preflight_facts(PostgresSource(dsn, read_only=True))
    return assess(facts, _redact_dsn(dsn), tables, source_name)


# -- embedded processes the long commands start -------------------------------------------------------
def refuse_running_bridge(settings: Settings) -> None:
    """Fail before touching anything (such as the embedded Postgres) another bridge uses."""
    if not settings.secret("clickhouse_url"):
        refuse_second_bridge(settings.state_dir)


def embedded_postgres(settings: Settings) -> EmbeddedPostgres:
    data_dir = settings.state_dir / "postgres" / "data"
    running = (data_dir / "postmaster.pid").exists()
    port = PortBook(settings.state_dir).port("postgres", busy_ok=running)
    return EmbeddedPostgres(data_dir, port, settings.log_dir / "postgres.log")


def running_dagster_ui(settings: Settings) -> str | None:
    """The address of a Dagster UI already serving this state dir, if one answers."""
    ui = DagsterUi(PortBook(settings.state_dir).port("dagster", busy_ok=True), settings.state_dir, {})
    return ui.url if ui.ready() else None


def dagster_ui(settings: Settings, env: dict[str, str]) -> DagsterUi:
    return DagsterUi(PortBook(settings.state_dir).port("dagster"), settings.state_dir, env)

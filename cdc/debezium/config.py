"""Debezium PostgreSQL connector configuration, as plain string properties.

Pure: stdlib only, no IO. The connector part (`connector_properties`) is what Kafka Connect's
REST API accepts in external mode; `engine_properties` adds what only the embedded engine needs
(offset storage, flush interval). `embedded_properties` is both together. The embedded runner's
producer and log4j2 settings live here too, so the JVM module holds only JVM code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from cdc.domain.names import parse_table
from cdc.errors import ConfigError

CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
SNAPSHOT_MODES = frozenset({"initial", "initial_only", "no_data", "never", "always", "when_needed", "recovery"})
BINARY_MODES = frozenset({"bytes", "base64", "base64-url-safe", "hex"})
_SECRET_KEY = re.compile(r"password|secret|credential|token|sasl\.jaas", re.IGNORECASE)
_IDENT = re.compile(r"[^a-z0-9_]+")
_MASK = "********"
_SALT = re.compile(r"(\.with\.salt\.).+$")
REDACTED_LENGTH = 8
HEARTBEAT_PREFIX = "cdc_heartbeat"
# Each heartbeat writes a tiny logical message into the captured database's WAL: when that database is
# idle and others on the cluster write, the slot still advances, so PostgreSQL does not keep their WAL.
# Any role may call it; no table is needed. Where an events lane runs, the message comes back through
# the stream as a tick of the source's commit clock (deadlines: cdc.domain.deadlines); elsewhere it is
# skipped (message.prefix.exclude.list).
# Transactional (`true`): pgoutput wraps it in BEGIN/COMMIT, and after a restart the connector looks
# for a COMMIT past its stored position before it lets the slot advance ("LSN flushing is not allowed
# yet"); a non-transactional message never ends that search on a source whose tables stay quiet.
HEARTBEAT_QUERY = f"SELECT pg_logical_emit_message(true, '{HEARTBEAT_PREFIX}', now()::text)"
PRODUCER_SETTINGS: dict[str, str] = {
    "acks": "all",
    "enable.idempotence": "true",
    "compression.type": "none",
    "linger.ms": "2",
    "batch.size": "524288",
    "buffer.memory": "134217728",
    "max.in.flight.requests.per.connection": "5",
    "request.timeout.ms": "10000",
    "delivery.timeout.ms": "30000",
    "max.block.ms": "15000",
    "key.serializer": "org.apache.kafka.common.serialization.StringSerializer",
    "value.serializer": "org.apache.kafka.common.serialization.StringSerializer",
}
_LOG4J2 = """status = error
name = cdc-debezium
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {path}
appender.file.filePattern = {path}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{{ISO8601}} %-5level [%t] %c{{1.}} - {message}%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
"""


@dataclass(frozen=True)
class ConnectorSettings:
    """Everything the Debezium PostgreSQL connector needs for one source database.

    `tables` are `schema.table` names. Slot and publication default to `cdc_<source>`.
    Intervals are milliseconds.
    """

    source: str
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    dbname: str
    tables: tuple[str, ...]
    offset_file: Path
    slot_name: str = ""
    publication_name: str = ""
    publication_autocreate: str = "filtered"  # "disabled": the bridge made the publication itself
    snapshot_mode: str = "initial"
    snapshot_tables: tuple[str, ...] | None = None  # the tables Debezium's snapshot reads (None: all of them)
    poll_interval_ms: int = 20
    max_batch_size: int = 4096
    max_queue_size: int = 32768
    heartbeat_interval_ms: int = 10_000
    offset_flush_interval_ms: int = 1_000
    tombstones_on_delete: bool = False
    binary_handling_mode: str = "base64"
    exclude_columns: tuple[str, ...] = ()  # schema.table.column: never read from the WAL
    generated_columns: tuple[tuple[str, str, str], ...] = ()  # (schema, table, column): left out, see README
    mask_hash: tuple[str, ...] = ()  # schema.table.column: salted SHA-256 of the text, inside Debezium
    mask_redact: tuple[str, ...] = ()  # schema.table.column: replaced by asterisks, inside Debezium
    mask_salt: str = field(default="", repr=False)
    heartbeat_action_query: str = ""
    message_prefixes: tuple[str, ...] = ()  # logical messages forwarded (to <source>.message); none: all skipped

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def slot(self) -> str:
        """Replication slot name: explicit, or `cdc_<source>` sanitized."""
        return self.slot_name or default_slot_name(self.source)

    @property
    def publication(self) -> str:
        """Publication name: explicit, or `cdc_<source>` sanitized."""
        return self.publication_name or default_slot_name(self.source)


def default_slot_name(source: str) -> str:
    """`cdc_<source>` reduced to what PostgreSQL accepts for a slot name ([a-z0-9_], 63 chars)."""
    cleaned = _IDENT.sub("_", source.lower()).strip("_")
    return f"cdc_{cleaned}"[:63]


def table_include_list(tables: tuple[str, ...]) -> str:
    """Anchored, regex-escaped `schema\\.table` patterns, comma separated (Java regex syntax).

    Debezium matches them case-insensitively: `(?-i)` keeps `Orders` apart from `orders`. Its list
    splitter trims each pattern and takes `\\,` as a comma inside one.
    """
    patterns = []
    for written in tables:
        schema, table = parse_table(written)
        patterns.append(f"^(?-i){_java_literal(schema)}\\.{_java_literal(table)}$")
    return ",".join(patterns)


def _java_literal(text: str) -> str:
    return re.escape(text).replace(",", "\\,")


def connector_properties(settings: ConnectorSettings) -> dict[str, str]:
    """Connector config: valid both for the embedded engine and Kafka Connect's REST API."""
    s = settings
    return {
        "connector.class": CONNECTOR_CLASS,
        "name": f"cdc-{s.source}",
        "tasks.max": "1",
        "topic.prefix": s.source,
        "database.hostname": s.host,
        "database.port": str(s.port),
        "database.user": s.user,
        "database.password": s.password,
        "database.dbname": s.dbname,
        "plugin.name": "pgoutput",
        "slot.name": s.slot,
        "publication.name": s.publication,
        "publication.autocreate.mode": s.publication_autocreate,
        "table.include.list": table_include_list(s.tables),
        **_snapshot_properties(s),
        "poll.interval.ms": str(s.poll_interval_ms),
        "max.batch.size": str(s.max_batch_size),
        "max.queue.size": str(s.max_queue_size),
        "heartbeat.interval.ms": str(s.heartbeat_interval_ms),
        "tombstones.on.delete": _bool(s.tombstones_on_delete),
        "decimal.handling.mode": "string",
        "interval.handling.mode": "string",  # ISO 8601 (P1Y2M3DT4H5M6.789S): months stay months
        "binary.handling.mode": s.binary_handling_mode,
        "include.unknown.datatypes": "true",
        "skipped.operations": "none",  # TRUNCATE is captured (Debezium skips it by default)
        "publish.via.partition.root": "true",  # a partitioned table's changes come as its root's
        **_column_properties(s),
        **_converter_properties(),
    }


def _snapshot_properties(s: ConnectorSettings) -> dict[str, str]:
    """The copy path loads some tables (cdc.mirror.initial_load): Debezium's snapshot reads the others."""
    if s.snapshot_tables is None:
        return {"snapshot.mode": s.snapshot_mode}
    if not s.snapshot_tables:
        return {"snapshot.mode": "no_data"}
    return {"snapshot.mode": s.snapshot_mode, "snapshot.include.collection.list": table_include_list(s.snapshot_tables)}


def _column_properties(s: ConnectorSettings) -> dict[str, str]:
    """Column exclusion and masking, applied by the connector before a record leaves the JVM, so
    masked values never reach Kafka, the mirror, the change log or the domain events."""
    props: dict[str, str] = {}
    excluded = [column_list(s.exclude_columns)] if s.exclude_columns else []
    excluded += ["^(?-i)" + "\\.".join(_java_literal(part) for part in c) + "$" for c in s.generated_columns]
    if excluded:
        props["column.exclude.list"] = ",".join(excluded)
    if s.mask_hash:
        props[f"column.mask.hash.v2.SHA-256.with.salt.{s.mask_salt}"] = column_list(s.mask_hash)
    if s.mask_redact:
        props[f"column.mask.with.{REDACTED_LENGTH}.chars"] = column_list(s.mask_redact)
    if s.heartbeat_action_query:
        props["heartbeat.action.query"] = s.heartbeat_action_query
    if s.message_prefixes:  # matched as regular expressions, so quoted: only these prefixes, exactly
        props["message.prefix.include.list"] = ",".join("^" + re.escape(p) + "$" for p in s.message_prefixes)
    elif s.heartbeat_action_query:
        props["message.prefix.exclude.list"] = HEARTBEAT_PREFIX
    return props


def column_list(columns: tuple[str, ...]) -> str:
    """Anchored, regex-escaped `schema\\.table\\.column` patterns, comma separated."""
    return ",".join("^(?-i)" + "\\.".join(_java_literal(part) for part in c.split(".")) + "$" for c in columns)


def engine_properties(settings: ConnectorSettings) -> dict[str, str]:
    """Extras only the embedded engine understands (Kafka Connect keeps offsets in Kafka)."""
    return {
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": str(settings.offset_file),
        "offset.flush.interval.ms": str(settings.offset_flush_interval_ms),
        "offset.flush.timeout.ms": "10000",
        # The engine reads `converter.*` then overrides with `key.converter.*`/`value.converter.*`;
        # both spellings are set so either reader sees schemas disabled.
        "converter.schemas.enable": "false",
    }


def embedded_properties(settings: ConnectorSettings) -> dict[str, str]:
    """Connector and engine properties together: what `DebeziumRunner` takes."""
    return {**connector_properties(settings), **engine_properties(settings)}


def connector_name(settings: ConnectorSettings) -> str:
    """The connector's name: the embedded engine's `name`, Kafka Connect's `/connectors/<name>`."""
    return connector_properties(settings)["name"]


def connect_properties(settings: ConnectorSettings) -> dict[str, str]:
    """Exactly what is PUT to Kafka Connect's `/connectors/<name>/config`.

    The connector part the embedded engine runs, minus `name` (Connect takes it from the URL):
    both modes capture with the same configuration.
    """
    props = connector_properties(settings)
    del props["name"]
    return props


def producer_properties(bootstrap_servers: str, client_id: str, overrides: dict[str, str]) -> dict[str, str]:
    """The embedded runner's Java KafkaProducer: acks=all + idempotence, small linger, big batches.

    `delivery.timeout.ms` bounds how long a lost broker goes unnoticed before the runner fails.
    """
    return {**PRODUCER_SETTINGS, **overrides, "bootstrap.servers": bootstrap_servers, "client.id": client_id}


# Debezium logs its configuration at start: keep the masking salt (part of a property name) out of it
_SCRUBBED_MESSAGE = "%replace{%m}{with\\\\.salt\\\\.[A-Za-z0-9]+}{with.salt.********}"


def log4j2_properties(log_path: Path) -> str:
    """Log4j2 config sending every JVM log line to `log_path` (rolled at 20 MB), none to the console."""
    return _LOG4J2.format(path=log_path.as_posix(), message=_SCRUBBED_MESSAGE)


def redacted(props: dict[str, str]) -> dict[str, str]:
    """A copy safe to log or print: values of password-like keys are masked."""
    return {_SALT.sub(r"\1" + _MASK, k): (_MASK if _SECRET_KEY.search(k) else v) for k, v in props.items()}


def _converter_properties() -> dict[str, str]:
    return {
        "key.converter": JSON_CONVERTER,
        "key.converter.schemas.enable": "false",
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": "false",
    }


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _validate(s: ConnectorSettings) -> None:
    # No dots: consumers split `<source>.<schema>.<table>` topic names on them.
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", s.source):
        raise ConfigError(f"source name {s.source!r} must be non-empty and use only letters, digits, '_', '-'")
    if not s.tables:
        raise ConfigError(f"source {s.source!r}: no tables to capture")
    for written in s.tables:
        try:
            parse_table(written)
        except ValueError as e:
            raise ConfigError(str(e)) from e
    if s.snapshot_mode not in SNAPSHOT_MODES:
        raise ConfigError(f"snapshot mode {s.snapshot_mode!r} is not one of {sorted(SNAPSHOT_MODES)}")
    if s.binary_handling_mode not in BINARY_MODES:
        raise ConfigError(f"binary handling mode {s.binary_handling_mode!r} is not supported")
    if not 0 < s.port < 65536:
        raise ConfigError(f"port {s.port} is out of range")
    if s.mask_hash and not re.fullmatch(r"[A-Za-z0-9]{8,}", s.mask_salt):
        raise ConfigError("the masking salt must be at least 8 letters or digits")
    if s.max_queue_size <= s.max_batch_size:
        raise ConfigError("max_queue_size must be larger than max_batch_size")

"""How one captured table is laid out in ClickHouse; ClickHouse itself parses the change messages.

Pure: builds SQL only. For source ``S`` and table ``t`` (schema ``public``; other schemas give
``<schema>__t``):

* ``S._ingest_t`` — Null engine: the consumer inserts each Kafka message as it is
  (topic, partition, offset, key, value) and nothing is stored here;
* ``S._log_t`` — ReplacingMergeTree keyed by (``_lsn``, identity, ``_op``): every change once,
  filled by the materialized view ``S._mv_log_t`` that parses the Debezium envelope;
* ``S._state_t`` — ReplacingMergeTree(_version, _is_deleted) keyed by the row identity, filled
  from the change log by ``S._mv_state_t``; ``_version`` is the source LSN, so replays and
  redelivered batches change nothing and the latest position wins;
* ``S._mv_dead_t`` routes messages that are not valid row-change envelopes to ``cdc.dead_letters``;
* ``S.t`` and ``S.t_changes`` — views with FINAL, so plain SELECTs see exactly the current rows
  (deletes hidden) and each change exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdc.domain.changes import TableRef, TableSchema
from cdc.mirror.typemap import ColumnPlan, extract_type, is_raw, plan_column, value_sql

STATE_META = (
    ("_version", "UInt64"),
    ("_is_deleted", "UInt8"),
    ("_lsn", "UInt64"),
    ("_txid", "Nullable(Int64)"),
    ("_commit_ts", "DateTime64(3, 'UTC')"),
    ("_op", "LowCardinality(String)"),
)
LOG_META = (
    ("_op", "LowCardinality(String)"),
    ("_lsn", "UInt64"),
    ("_txid", "Nullable(Int64)"),
    ("_commit_ts", "DateTime64(3, 'UTC')"),
    ("_snapshot", "UInt8"),
)
INGEST_COLUMNS = ("topic", "partition", "offset", "key", "value")
_INGEST_COLUMNS = "topic String, partition Int32, offset Int64, key Nullable(String), value String"
INGESTED = "`_ingested_at` DateTime64(3, 'UTC') DEFAULT now64(3)"
RESERVED = {name for name, _ in STATE_META + LOG_META} | {"_ingested_at"}
_SOURCE = "Tuple(lsn UInt64, txId Nullable(Int64), ts_ms Int64, snapshot Nullable(String))"
_ROW_OPS = "('c', 'u', 'd', 'r')"
# One JSON parse per message: the envelope's top-level members as raw JSON text.
_PARSE = (
    "SELECT topic, partition, offset, key, value, op, img, src, multiIf("
    "NOT ok_json, 'not a JSON document', "
    f"op NOT IN {_ROW_OPS}, concat('unknown op ', if(op_raw = '', '(none)', op_raw)), "
    "JSONType(src, 'lsn') NOT IN ('Int64', 'UInt64'), 'source.lsn missing or not an integer', "
    "NOT startsWith(img, '{'), 'row image missing: before (delete) or after (other ops) is not an object', "
    "'') AS reason "
    "FROM (SELECT *, isValidJSON(value) AS ok_json, if(ok_json, JSONExtractKeysAndValuesRaw(value), []) AS kv, "
    "arrayFirst(x -> x.1 = 'op', kv).2 AS op_raw, replaceAll(op_raw, '\"', '') AS op, "
    "arrayFirst(x -> x.1 = if(op = 'd', 'before', 'after'), kv).2 AS img, "
    "arrayFirst(x -> x.1 = 'source', kv).2 AS src FROM {ingest})"
)
# truncate ('t') and logical-decoding message ('m') events are not row changes: skipped, not dead letters

def quote(identifier: str) -> str:
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def mirror_name(ref: TableRef) -> str:
    return ref.table if ref.schema == "public" else f"{ref.schema}__{ref.table}"


@dataclass
class MirrorTable:
    """The ClickHouse side of one captured table."""

    schema: TableSchema
    database: str

    def __post_init__(self) -> None:
        clash = RESERVED & set(self.schema.column_names)
        if clash:
            raise ValueError(f"{self.schema.ref.qualified}: column names reserved by the mirror: {sorted(clash)}")
        key = set(self.schema.key)
        self.state_plans = [plan_column(c) for c in self.schema.columns]
        # the change log keeps deletes' partial images, so every non-key column may be NULL there
        self.log_plans = [plan_column(c, force_nullable=c.name not in key) for c in self.schema.columns]
        self.name = mirror_name(self.schema.ref)

    def _t(self, prefix: str, suffix: str = "") -> str:
        return f"{quote(self.database)}.{quote(prefix + self.name + suffix)}"

    @property
    def ingest_table(self) -> str:
        return "_ingest_" + self.name

    @property
    def view(self) -> str:
        return self._t("")

    @property
    def changes_view(self) -> str:
        return self._t("", "_changes")

    def ddl(self) -> list[str]:
        """Statements that create (idempotently) everything this table needs; ``cdc.dead_letters`` must exist."""
        key = ", ".join(quote(k) for k in self.schema.key) or "tuple()"
        cols = ", ".join(quote(p.name) for p in self.state_plans)
        return [
            f"CREATE DATABASE IF NOT EXISTS {quote(self.database)}",
            _create(self._t("_state_"), self.state_plans, STATE_META, "ReplacingMergeTree(_version, _is_deleted)", key),
            _create(self._t("_log_"), self.log_plans, LOG_META, "ReplacingMergeTree", f"_lsn, {key}, _op"),
            f"CREATE TABLE IF NOT EXISTS {self._t('_ingest_')} ({_INGEST_COLUMNS}) ENGINE = Null",
            f"CREATE TABLE IF NOT EXISTS {self._t('_parsed_')} ({_INGEST_COLUMNS}, op String, img String,"
            " src String, reason String) ENGINE = Null",
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self._t('_mv_state_')} TO {self._t('_state_')} AS "
            + self._state_select(),
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self._t('_mv_log_')} TO {self._t('_log_')} AS "
            + self._log_select(),
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self._t('_mv_dead_')} TO cdc.dead_letters AS SELECT topic,"
            f" partition, offset, key, value, reason AS error, 'parse' AS stage FROM {self._t('_parsed_')}"
            " WHERE reason != '' AND op NOT IN ('t', 'm')",
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self._t('_mv_parse_')} TO {self._t('_parsed_')} AS "
            + _PARSE.replace("{ingest}", self._t("_ingest_")),
            f"CREATE OR REPLACE VIEW {self.view} AS SELECT {cols} FROM {self._t('_state_')} FINAL"
            " WHERE _is_deleted = 0",
            f"CREATE OR REPLACE VIEW {self.changes_view} AS SELECT {cols}, _op, _lsn, _txid, _commit_ts,"
            f" _snapshot, _ingested_at FROM {self._t('_log_')} FINAL",
        ]

    def _log_select(self) -> str:
        fields = ", ".join(f"{quote(c.name)} {extract_type(c)}" for c in self.schema.columns if not is_raw(c))
        values = []
        for plan in self.log_plans:
            c = plan.column
            if is_raw(c):
                name = _literal(c.name)
                expr = (f"if(JSONType(img_raw, {name}) = 'String', JSONExtractString(img_raw, {name}),"
                        f" nullIf(JSONExtractRaw(img_raw, {name}), 'null'))")
            else:
                expr = value_sql(c, f"tupleElement(img, {_literal(c.name)})")
            if not plan.nullable and not plan.base_type.startswith("Array("):
                expr = f"assumeNotNull({expr})"
            values.append(f"{expr} AS {quote(c.name)}")
        return (
            f"SELECT {', '.join(values)}, op AS _op, tupleElement(src, 'lsn') AS _lsn,"
            " tupleElement(src, 'txId') AS _txid,"
            " fromUnixTimestamp64Milli(tupleElement(src, 'ts_ms'), 'UTC') AS _commit_ts,"
            " ifNull(tupleElement(src, 'snapshot'), 'false') NOT IN ('false', '') AS _snapshot "
            "FROM (SELECT op, JSONExtract(src, '" + _SOURCE + "') AS src,"
            f" img AS img_raw, JSONExtract(img, 'Tuple({_escape(fields)})') AS img"
            f" FROM {self._t('_parsed_')} WHERE reason = '')"
        )

    def _state_select(self) -> str:
        values = []
        for plan in self.state_plans:
            name = quote(plan.name)
            if plan.nullable or plan.base_type.startswith("Array("):
                values.append(name)
            else:  # deletes carry only the key: other NOT NULL columns take their type's default
                values.append(f"ifNull({name}, defaultValueOfTypeName({_literal(plan.base_type)})) AS {name}")
        return (
            f"SELECT {', '.join(values)}, _lsn AS _version, toUInt8(_op = 'd') AS _is_deleted, _lsn, _txid,"
            f" _commit_ts, _op FROM {self._t('_log_')}"
        )


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _create(table: str, plans: list[ColumnPlan], meta: tuple[tuple[str, str], ...], engine: str,
            order_by: str) -> str:
    cols = [f"{quote(p.name)} {p.ch_type}" for p in plans] + [f"{quote(n)} {t}" for n, t in meta] + [INGESTED]
    return (
        f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(cols)}) ENGINE = {engine} "
        f"ORDER BY ({order_by}) SETTINGS allow_nullable_key = 1"
    )


__all__ = ["MirrorTable", "mirror_name", "quote", "INGEST_COLUMNS"]

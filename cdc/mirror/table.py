"""How one captured table is laid out in ClickHouse; ClickHouse itself parses the change messages.

Pure: builds SQL only. For source ``S`` and table ``t`` (schema ``public``; other schemas give
``<schema>__t``):

* ``S._copy_t`` — Null engine: the initial load's copy path inserts rows here (``cdc.mirror.copy_sql``);
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

Schema drift is caught inside ClickHouse at no Python cost: the change-log view fails the insert
with ``cdc-schema-drift`` (see :data:`DRIFT_MARK`) when a row image's columns are not a shape the
mirror accepts, a value's JSON type does not fit its column, or an integer overflows its column;
the sink then follows the source (``cdc.mirror.evolution``) and retries. The state view skips
changes that carry Debezium's unchanged-TOAST placeholder; the sink writes those state rows
itself with the stored value (``cdc.mirror.toast``).
"""

from __future__ import annotations

from dataclasses import dataclass

from cdc.domain import names
from cdc.domain.changes import Column, TableRef, TableSchema
from cdc.mirror import row_checks
from cdc.mirror.copy_sql import copy_table_ddl, copy_view_select
from cdc.mirror.model import MirrorModel
from cdc.mirror.placeholders import placeholder_test
from cdc.mirror.row_checks import drift_sql, quote, special_map_sql
from cdc.mirror.row_checks import literal as _literal
from cdc.mirror.typemap import NARROW, Bounds, ColumnPlan, extract_type, has_special, is_raw, plan_column, value_sql

STATE_META = (
    ("_version", "UInt64"),
    ("_is_deleted", "UInt8"),
    ("_lsn", "UInt64"),
    ("_txid", "Nullable(Int64)"),
    ("_commit_ts", "DateTime64(3, 'UTC')"),
    ("_op", "LowCardinality(String)"),
    ("_special", "Map(String, String)"),
)
LOG_META = (
    ("_op", "LowCardinality(String)"),
    ("_lsn", "UInt64"),
    ("_txid", "Nullable(Int64)"),
    ("_commit_ts", "DateTime64(3, 'UTC')"),
    ("_snapshot", "UInt8"),
    ("_special", "Map(String, String)"),
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
    "arrayFirst(x -> x.1 = 'source', kv).2 AS src FROM {ingest}){where}"
)
# truncate ('t') and logical-decoding message ('m') events are not row changes: skipped, not dead letters
DRIFT_MARK = "cdc-schema-drift"


def unmirrorable(schema: TableSchema) -> str | None:
    """Why this table cannot be captured (None: it can): the bridge leaves it out and says so."""
    return row_checks.unmirrorable(schema, RESERVED)


def mirror_name(ref: TableRef) -> str:
    """See :func:`cdc.domain.names.mirror_name`."""
    return names.mirror_name(ref.schema, ref.table)


@dataclass
class MirrorTable:
    """The ClickHouse side of one captured table."""

    schema: TableSchema
    database: str
    model: MirrorModel | None = None  # what the ClickHouse tables hold; default: exactly ``schema``
    shared_topic: bool = False  # other tables' changes arrive on the same topic: keep only this table's
    bounds: Bounds = NARROW  # the dates and times the warehouse holds

    def __post_init__(self) -> None:
        model = self.known = self.model or MirrorModel.of(self.schema)
        clash = RESERVED & {c.name for c in model.columns}
        if clash:
            raise ValueError(f"{self.schema.ref.qualified}: column names reserved by the mirror: {sorted(clash)}")
        key = set(model.key)
        self.columns = model.columns
        # key columns are the ClickHouse sorting key: their type cannot change there
        self.state_plans = [
            self._plan(c, c.name not in key and (c.name in model.nullable or c.name in model.dropped))
            for c in self.columns
        ]
        # the change log keeps deletes' partial images, so every non-key column may be NULL there
        self.log_plans = [self._plan(c, c.name not in key) for c in self.columns]
        self.name = mirror_name(self.schema.ref)

    def _plan(self, col: Column, force_nullable: bool) -> ColumnPlan:
        if self.textual(col):
            return ColumnPlan(col.name, "Array(Nullable(String))" if col.is_array else "String", True, col)
        return plan_column(col, force_nullable)

    def textual(self, col: Column) -> bool:
        return is_raw(col) or (col.name in self.known.as_text and col.name not in self.known.key)

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
        key = ", ".join(quote(k) for k in self.known.key) or "tuple()"
        return [
            f"CREATE DATABASE IF NOT EXISTS {quote(self.database)}",
            _create(self._t("_state_"), self.state_plans, STATE_META, "ReplacingMergeTree(_version, _is_deleted)", key),
            _create(self._t("_log_"), self.log_plans, LOG_META, "ReplacingMergeTree", f"_lsn, {key}, _op"),
            f"CREATE TABLE IF NOT EXISTS {self._t('_ingest_')} ({_INGEST_COLUMNS}) ENGINE = Null",
            f"CREATE TABLE IF NOT EXISTS {self._t('_parsed_')} ({_INGEST_COLUMNS}, op String, img String,"
            " src String, reason String) ENGINE = Null",
        ]

    def alter_ddl(self, existing: dict[str, dict[str, str]]) -> list[str]:
        """ALTERs that bring the state and log tables to this plan; ``existing``: table -> column -> type."""
        out = []
        for prefix, plans in (("_state_", self.state_plans), ("_log_", self.log_plans)):
            if prefix + self.name not in existing:
                continue  # just created from this plan
            have = existing[prefix + self.name]
            after = "FIRST"
            for p in plans:
                if p.name not in have:
                    out.append(
                        f"ALTER TABLE {self._t(prefix)} ADD COLUMN IF NOT EXISTS {quote(p.name)} {p.ch_type} {after}"
                    )
                elif have[p.name].replace(" ", "") != p.ch_type.replace(" ", ""):
                    out.append(f"ALTER TABLE {self._t(prefix)} MODIFY COLUMN {quote(p.name)} {p.ch_type}")
                after = f"AFTER {quote(p.name)}"
            if "_special" not in have:  # mirrors made before values ClickHouse cannot hold were named
                out.append(f"ALTER TABLE {self._t(prefix)} ADD COLUMN IF NOT EXISTS _special Map(String, String)")
        return out

    @property
    def storage_tables(self) -> tuple[str, str]:
        return "_state_" + self.name, "_log_" + self.name

    def views_ddl(self) -> list[str]:
        """(Re)create the materialized and plain views. Dropping a materialized view stops it: only run
        this while nothing inserts into the ingest table (the consumer runs it between its own inserts)."""
        cols = ", ".join(self.view_columns())
        mvs = [
            (self._t("_mv_state_"), self._t("_state_"), self.state_select()),
            (self._t("_mv_log_"), self._t("_log_"), self._log_select()),
            (
                self._t("_mv_dead_"),
                "cdc.dead_letters",
                "SELECT topic, partition, offset, key, value, reason AS error,"
                f" 'parse' AS stage FROM {self._t('_parsed_')} WHERE reason != '' AND op NOT IN ('t', 'm')",
            ),
            (
                self._t("_mv_parse_"),
                self._t("_parsed_"),
                _PARSE.replace("{ingest}", self._t("_ingest_")).replace("{where}", self._only_mine()),
            ),
        ]
        # the initial load's rows go to the state only, as a resync's do: they are the table as it was, not
        # changes, and writing each twice would make the load half as fast (the change log starts at the stream)
        mvs.append((self._t("_mv_copy_"), self._t("_state_"), self.state_select(f"({copy_view_select(self)})")))
        out = [f"DROP VIEW IF EXISTS {mv}" for mv, _, _ in mvs]
        out += [f"DROP TABLE IF EXISTS {self._t('_copy_')}", copy_table_ddl(self)]
        out += [f"CREATE MATERIALIZED VIEW {mv} TO {target} AS {select}" for mv, target, select in mvs]
        return out + [
            f"CREATE OR REPLACE VIEW {self.view} AS SELECT {cols} FROM {self._t('_state_')} FINAL"
            " WHERE _is_deleted = 0",
            f"CREATE OR REPLACE VIEW {self.changes_view} AS SELECT {cols}, _op, _lsn, _txid, _commit_ts,"
            f" _snapshot, _ingested_at FROM {self._t('_log_')} FINAL",
        ]

    def view_columns(self) -> list[str]:
        """The current-state view's columns, quoted: the state columns, and ``_special`` when any column has one."""
        return [quote(p.name) for p in self.state_plans] + (["_special"] if self.specials() else [])

    def _only_mine(self) -> str:
        """On a shared topic: this table's messages, and those nobody can place (to be dead-lettered)."""
        if not self.shared_topic:
            return ""
        ref = self.schema.ref
        return (
            " WHERE NOT ok_json OR NOT startsWith(src, '{') OR (JSONExtractString(src, 'schema') ="
            f" {_literal(ref.schema)} AND JSONExtractString(src, 'table') = {_literal(ref.table)})"
        )

    def _log_select(self) -> str:
        fields = ", ".join(f"{quote(c.name)} {extract_type(c)}" for c in self.columns if not self.textual(c))
        values = []
        for plan in self.log_plans:
            c = plan.column
            name = _literal(c.name)
            if self.textual(c) and c.is_array:
                expr = f"JSONExtract(img_raw, {name}, 'Array(Nullable(String))')"
            elif self.textual(c):
                expr = (
                    f"if(JSONType(img_raw, {name}) = 'String', JSONExtractString(img_raw, {name}),"
                    f" nullIf(JSONExtractRaw(img_raw, {name}), 'null'))"
                )
            else:
                expr = value_sql(c, f"tupleElement(tup, {name})", self.bounds)
            if not plan.nullable and not plan.base_type.startswith("Array("):
                expr = f"assumeNotNull({expr})"
            values.append(f"{expr} AS {quote(c.name)}")
        return (
            f"SELECT {', '.join(values)}, {special_map_sql(self, self.specials())} AS _special,"
            " op AS _op, tupleElement(src, 'lsn') AS _lsn,"
            " tupleElement(src, 'txId') AS _txid,"
            " fromUnixTimestamp64Milli(tupleElement(src, 'ts_ms'), 'UTC') AS _commit_ts,"
            " ifNull(tupleElement(src, 'snapshot'), 'false') NOT IN ('false', '') AS _snapshot "
            "FROM (SELECT op, JSONExtract(src, '" + _SOURCE + "') AS src,"
            f" img AS img_raw, JSONExtract(img, 'Tuple({_escape(fields)})') AS tup"
            f" FROM {self._t('_parsed_')} WHERE reason = '')"
            f" WHERE throwIf({self.drift_sql()}, '{DRIFT_MARK}: a row image does not fit the mirror') = 0"
        )

    def specials(self) -> list[Column]:
        return [c for c in self.columns if c.is_array or (not self.textual(c) and has_special(c))]

    def drift_sql(self) -> str:
        """True for a change the mirror cannot take as it is (see :func:`cdc.mirror.row_checks.drift_sql`)."""
        return drift_sql(self)

    def placeholder_test(self, plan: ColumnPlan, expr: str) -> str | None:
        """SQL true when ``expr`` (a value of ``plan``'s column) is the placeholder; None: it cannot be."""
        if plan.name in self.known.key:
            return None
        return placeholder_test(plan.base_type, expr)

    def placeholder_sql(self) -> str:
        """True for a change-log row holding the unchanged-TOAST placeholder in any column."""
        tests = [self.placeholder_test(p, quote(p.name)) for p in self.log_plans]
        return " OR ".join(t for t in tests if t) or "0"

    def state_values(self) -> list[str]:
        values = []
        for plan in self.state_plans:
            name = quote(plan.name)
            if plan.nullable or plan.base_type.startswith("Array("):
                values.append(name)
            else:  # deletes carry only the key: other NOT NULL columns take their type's default
                values.append(f"ifNull({name}, defaultValueOfTypeName({_literal(plan.base_type)})) AS {name}")
        return values

    def state_select(self, changes: str = "") -> str:
        """The state rows of change-log rows (``changes``: a table or subquery; default: the change log)."""
        # a change carrying the TOAST placeholder would overwrite a stored value: the sink writes it instead
        return (
            f"SELECT {', '.join(self.state_values())}, _lsn AS _version, toUInt8(_op = 'd') AS _is_deleted, _lsn,"
            f" _txid, _commit_ts, _op, _special FROM {changes or self._t('_log_')}"
            f" WHERE _op IN ('c', 'u', 'r') AND NOT ({self.placeholder_sql()}) OR _op = 'd'"
        )

    def qualified(self, prefix: str) -> str:
        """``database.<prefix><name>``, quoted: e.g. ``qualified("_state_")``."""
        return self._t(prefix)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _create(table: str, plans: list[ColumnPlan], meta: tuple[tuple[str, str], ...], engine: str, order_by: str) -> str:
    cols = [f"{quote(p.name)} {p.ch_type}" for p in plans] + [f"{quote(n)} {t}" for n, t in meta] + [INGESTED]
    return (
        f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(cols)}) ENGINE = {engine} "
        f"ORDER BY ({order_by}) SETTINGS allow_nullable_key = 1"
    )


__all__ = ["DRIFT_MARK", "INGEST_COLUMNS", "MirrorTable", "mirror_name", "quote"]

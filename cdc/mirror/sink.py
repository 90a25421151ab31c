"""The mirror sink: change messages -> ClickHouse current-state and change-log tables."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Sequence

from cdc.consume.dead_letters import DEAD_LETTERS_DDL
from cdc.domain.changes import TableRef, TableSchema
from cdc.errors import CdcError, DataRejected, UnknownTableError, WarehouseError
from cdc.mirror.ddl_gate import DdlGate
from cdc.mirror.evolution import Shape, reconcile, shape_of
from cdc.mirror.model import MirrorModel, SchemaNotice
from cdc.mirror.table import DRIFT_MARK, INGEST_COLUMNS, MirrorTable, mirror_name
from cdc.mirror.toast import any_placeholder, has_placeholder, message_lsn, repair_sql
from cdc.mirror.truncate import Truncate, snapshot_ends, truncate_sql, truncates
from cdc.mirror.typemap import NARROW, PROBE_SQL, WIDE
from cdc.ports import Catalog, Message, Rejected, Warehouse

log = logging.getLogger(__name__)

# what each mirror's ClickHouse tables hold (survives restarts), and the schema changes found so far
MODEL_DDL = (
    "CREATE TABLE IF NOT EXISTS cdc.mirror_models (database String, table String, model String, views String,"
    " updated_at DateTime64(6, 'UTC') DEFAULT now64(6)) ENGINE = ReplacingMergeTree(updated_at)"
    " ORDER BY (database, table)",
    "CREATE TABLE IF NOT EXISTS cdc.schema_notices (table String, kind LowCardinality(String), column String,"
    " detail String, first_seen_lsn Nullable(UInt64), first_seen_at DateTime64(3, 'UTC'))"
    " ENGINE = ReplacingMergeTree ORDER BY (table, kind, column, detail)",
)


# Replacing merges and FINAL resolve versions; deduplicating again while inserting costs ~13% of the insert.
INSERT_SETTINGS = {"optimize_on_insert": 0}
CATALOG_CHECK_S = 5.0  # how often a written table's definition is compared with the source catalog
_DRIFT_ATTEMPTS = 3


class SchemaDriftError(CdcError):
    """A table's changes no longer fit its mirror and following the source did not help."""


def table_ref_of(topic: str) -> TableRef:
    """``<source>.<schema>.<table>`` -> TableRef (source names contain no dots)."""
    parts = topic.split(".", 2)
    if len(parts) != 3 or not all(parts):
        raise UnknownTableError(f"topic {topic!r} is not named <source>.<schema>.<table>")
    return TableRef(*parts)


class ClickHouseMirrorSink:
    """Hands Kafka messages to ClickHouse, which parses them into the mirror tables.

    ``write`` returns only after ClickHouse stored the batch (the materialized views run
    inside the insert), so the caller may then commit the broker offsets. Writes are
    idempotent: rows are versioned by source LSN, a batch applied twice leaves the same tables.

    The mirror follows the source's schema with no restart (``cdc.mirror.evolution``): when
    ClickHouse reports drift, or every few seconds, the table's definition is read again from
    the catalog, the ClickHouse tables and views are altered (between two inserts of this
    sink, the only writer) and the batch is written again. :meth:`schema_notices` lists what
    changed; each is also logged at WARNING.
    """

    def __init__(self, warehouse: Warehouse, catalog: Catalog) -> None:
        self._warehouse = warehouse
        self._catalog = catalog
        self._tables: dict[TableRef, MirrorTable] = {}
        self._routes: dict[str, list[TableRef]] = {}  # topic -> the tables whose changes it carries
        self._checked: dict[TableRef, float] = {}
        self._notices: dict[tuple[str, str, str, str], SchemaNotice] = {}
        self._lock = threading.Lock()
        self.gate = DdlGate()  # inserts into the Null tables vs. recreating the views behind them
        self._schema_lock = threading.RLock()  # the consumer and the copy workers may both follow the source
        for statement in DEAD_LETTERS_DDL + MODEL_DDL:
            warehouse.command(statement)
        self._load_notices()
        rows = warehouse.query(PROBE_SQL)
        self._bounds = WIDE if rows and rows[0][0] else NARROW  # years 1-9999, or 1900-2299

    def prepare(self, schemas: Sequence[TableSchema]) -> None:
        """Create the ClickHouse objects for ``schemas`` up front, or bring existing ones up to date."""
        for schema in schemas:
            routes = self._routes.setdefault(schema.ref.topic, [])
            if schema.ref not in routes:
                routes.append(schema.ref)
        for schema in schemas:
            self._ensure(schema.ref, schema)

    def table(self, ref: TableRef) -> MirrorTable:
        return self._tables.get(ref) or self._ensure(ref, None)

    def follow_source(self, ref: TableRef) -> MirrorTable:
        """The table, brought up to the source catalog's definition first (the copy path, before a chunk)."""
        return self._check_catalog(ref, self.table(ref))

    def schema_notices(self) -> list[SchemaNotice]:
        """Schema changes found in this sink's tables (also in earlier runs), oldest first."""
        with self._lock:
            mine = {ref.topic for ref in list(self._tables)}
            found = [n for n in self._notices.values() if n.table in mine]
        return sorted(found, key=lambda n: (n.first_seen_at, n.table, n.column))

    def write(self, topic: str, messages: Sequence[Message]) -> Sequence[Rejected]:
        """Store ``messages`` of one change topic (tombstones already removed). A topic that several
        tables share (see :mod:`cdc.domain.names`) goes to each; each keeps its own messages."""
        rejected: dict[tuple[int, int], Rejected] = {}
        for ref in self._routes.get(topic) or [table_ref_of(topic)]:
            for r in self._write_table(ref, messages):
                rejected.setdefault((r.message.partition, r.message.offset), r)
        return list(rejected.values())

    def _write_table(self, ref: TableRef, messages: Sequence[Message]) -> Sequence[Rejected]:
        with self.gate.insert():  # a resync's swap or a view's recreation waits for the whole batch
            return self._write_locked(ref, messages)

    def _write_locked(self, ref: TableRef, messages: Sequence[Message]) -> Sequence[Rejected]:
        table = self.table(ref)
        if time.monotonic() - self._checked.get(ref, 0.0) > CATALOG_CHECK_S:
            table = self._check_catalog(ref, table)
        rows = [(m.topic, m.partition, m.offset, m.key, m.value) for m in messages]
        for attempt in range(_DRIFT_ATTEMPTS + 1):
            try:
                self._warehouse.insert(table.database, table.ingest_table, INGEST_COLUMNS, rows, INSERT_SETTINGS)
                break
            except WarehouseError as e:
                if DRIFT_MARK not in str(e):
                    raise
                if attempt == _DRIFT_ATTEMPTS:
                    error = SchemaDriftError(
                        f"changes of {ref.qualified} do not fit its mirror after following the"
                        f" source's schema {attempt} times: {e}"
                    )
                    return [Rejected(m, error) for m in messages]
                try:
                    table = self._follow(ref, table, messages)
                except DataRejected as e:  # ClickHouse cannot make the change: hold this table's changes
                    error = SchemaDriftError(f"the mirror of {ref.qualified} cannot follow its source: {e}")
                    return [Rejected(m, error) for m in messages]
        self._repair_toast(table, messages)
        for lsn in snapshot_ends(ref, messages):  # rows an earlier, unfinished snapshot read may be gone since
            for statement in truncate_sql(table, Truncate(lsn, None, 0), log=False):
                self._warehouse.command(statement)
        for t in truncates(ref, messages):
            for statement in truncate_sql(table, t):
                self._warehouse.command(statement)
            log.warning("TRUNCATE of %s at lsn %d: its mirror is empty as of that position", ref.qualified, t.lsn)
        return ()  # ClickHouse routes envelopes it cannot parse to cdc.dead_letters itself

    # -- following the source -------------------------------------------------------------------
    def _ensure(self, ref: TableRef, schema: TableSchema | None) -> MirrorTable:
        with self._schema_lock:
            return self._ensure_locked(ref, schema)

    def _ensure_locked(self, ref: TableRef, schema: TableSchema | None) -> MirrorTable:
        table = self._tables.get(ref)
        if table is not None:
            return table
        schema = schema or self._catalog.table_schema(ref)
        if schema is None:
            raise UnknownTableError(f"no table {ref.qualified} in source {ref.source!r}")
        existing = self._columns(ref.source, mirror_name(ref))
        stored = self._stored(ref.source, mirror_name(ref))
        model = MirrorModel.from_json(stored[0]) if stored else MirrorModel.of(schema)
        if stored is None and f"_state_{mirror_name(ref)}" in existing:
            have = existing[f"_state_{mirror_name(ref)}"]  # made before models were kept: what ClickHouse holds
            model = MirrorModel(tuple(c for c in schema.columns if c.name in have), schema.key)
        model, notices = reconcile(model, schema, table=ref.topic, at=time.time())
        table = MirrorTable(schema, ref.source, model, shared_topic=self._shared(ref), bounds=self._bounds)
        self._apply(table, existing, stored, notices)
        self._tables[ref] = table
        self._checked[ref] = time.monotonic()
        log.info("mirroring %s into %s", ref.qualified, table.view)
        return table

    def _shared(self, ref: TableRef) -> bool:
        """Other tables' changes may come on this table's topic: captured tables whose names sanitise
        alike, or (a dot in a name) a table Debezium's include pattern matches too."""
        return len(self._routes.get(ref.topic, ())) > 1 or "." in ref.schema or "." in ref.table

    def _check_catalog(self, ref: TableRef, table: MirrorTable) -> MirrorTable:
        """Catch type changes that keep the JSON type (int4 -> int8, numeric(p, s) up, ...)."""
        try:
            return self._follow(ref, table, ())
        except CdcError as e:  # the source may be down for a while: the stream goes on, the check comes back
            log.warning("could not compare %s with the source catalog: %s", ref.qualified, e)
            return table

    def _follow(self, ref: TableRef, table: MirrorTable, messages: Sequence[Message]) -> MirrorTable:
        """Bring ``table`` up to the catalog's definition and the row shapes in ``messages``."""
        with self._schema_lock:
            return self._follow_locked(ref, self._tables.get(ref, table), messages)

    def _follow_locked(self, ref: TableRef, table: MirrorTable, messages: Sequence[Message]) -> MirrorTable:
        self._checked[ref] = time.monotonic()
        schema = self._catalog.table_schema(ref)
        observed, lsn = _shapes(messages)
        model, notices = reconcile(table.known, schema, observed, table=ref.topic, lsn=lsn, at=time.time())
        if model == table.known:
            return table
        new = MirrorTable(
            schema or table.schema, table.database, model, shared_topic=table.shared_topic, bounds=table.bounds
        )
        self._apply(new, self._columns(table.database, table.name), None, notices)
        self._tables[ref] = new
        return new

    def _apply(
        self,
        table: MirrorTable,
        existing: dict[str, dict[str, str]],
        stored: tuple[str, str] | None,
        notices: list[SchemaNotice],
    ) -> None:
        """Alter the tables, recreate the views if their SQL changed, then remember the model (in that
        order: a crash in between redoes the work at the next start)."""
        for statement in table.ddl() + table.alter_ddl(existing):
            self._warehouse.command(statement)
        ddl = table.views_ddl()
        now = (table.known.to_json(), "\n".join(ddl))
        if stored is None or stored[1] != now[1]:
            with self.gate.ddl():  # an insert meanwhile would pass a Null table with no view: lost
                for statement in ddl:
                    self._warehouse.command(statement)
        if stored != now:
            self._warehouse.insert(
                "cdc", "mirror_models", ("database", "table", "model", "views"), [(table.database, table.name, *now)]
            )
        self._record(notices)

    def _record(self, notices: list[SchemaNotice]) -> None:
        fresh = []
        with self._lock:
            for n in notices:
                key = (n.table, n.kind, n.column, n.detail)
                if key not in self._notices:
                    self._notices[key] = n
                    fresh.append(n)
        for n in fresh:
            log.warning("schema change in %s: %s %s — %s", n.table, n.kind, n.column, n.detail)
        if fresh:
            self._warehouse.insert(
                "cdc",
                "schema_notices",
                ("table", "kind", "column", "detail", "first_seen_lsn", "first_seen_at"),
                [
                    (
                        n.table,
                        n.kind,
                        n.column,
                        n.detail,
                        n.first_seen_lsn,
                        dt.datetime.fromtimestamp(n.first_seen_at, dt.UTC),
                    )
                    for n in fresh
                ],
            )

    def _load_notices(self) -> None:
        rows = self._warehouse.query(
            "SELECT table, kind, column, detail, min(first_seen_lsn),"
            " toFloat64(min(first_seen_at)) FROM cdc.schema_notices"
            " GROUP BY table, kind, column, detail"
        )
        with self._lock:
            for r in rows:
                self._notices[(r[0], r[1], r[2], r[3])] = SchemaNotice(r[0], r[1], r[2], r[3], r[4], float(r[5]))

    def _stored(self, database: str, name: str) -> tuple[str, str] | None:
        """(model JSON, views SQL) as last applied."""
        rows = self._warehouse.query(
            "SELECT model, views FROM cdc.mirror_models FINAL WHERE database = {d:String} AND table = {t:String}",
            {"d": database, "t": name},
        )
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    def _columns(self, database: str, name: str) -> dict[str, dict[str, str]]:
        rows = self._warehouse.query(
            "SELECT table, name, type FROM system.columns WHERE database = {d:String} AND table IN"
            " ({s:String}, {l:String})",
            {"d": database, "s": "_state_" + name, "l": "_log_" + name},
        )
        out: dict[str, dict[str, str]] = {}
        for table, column, kind in rows:
            out.setdefault(table, {})[column] = kind
        return out

    # -- unchanged TOAST values ------------------------------------------------------------------
    def _repair_toast(self, table: MirrorTable, messages: Sequence[Message]) -> None:
        if not any_placeholder([m.value for m in messages if m.value is not None]):
            return
        lsns = [lsn for m in messages if has_placeholder(m.value) and (lsn := message_lsn(m.value or b"")) is not None]
        if lsns:
            self._warehouse.command(repair_sql(table, min(lsns)))


def _shapes(messages: Sequence[Message]) -> tuple[set[Shape], int | None]:
    """Row-image shapes of the changes in ``messages``, and their lowest LSN (only after ClickHouse found drift)."""
    shapes: set[Shape] = set()
    lsn: int | None = None
    for m in messages:
        try:
            doc = json.loads(m.value or b"")
            image = doc["after"] if doc["op"] in ("c", "u", "r") else None
            at = doc["source"]["lsn"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(image, dict):
            shapes.add(shape_of(image))
            if isinstance(at, int) and (lsn is None or at < lsn):
                lsn = at
    return shapes, lsn

"""PostgreSQL adapter: the only module that imports psycopg.

Reads the catalog (tables, columns, keys, replica identity), checks readiness for
logical replication, and offers a small session API for setup scripts and the demo's
load generator. Driver errors become :class:`SourceError` with the password removed.
"""

from __future__ import annotations

import logging
import os
import re
import select
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import psycopg

from cdc.adapters.postgres_catalog import CATALOG_SQL, NO_IDENTITY, schemas_from_rows, with_source
from cdc.domain.changes import TableRef, TableSchema
from cdc.domain.names import display_table, parse_table, sql_table
from cdc.errors import SourceError
from cdc.ports import SlotInfo

__all__ = ["Excluded", "PostgresSession", "PostgresSource", "SlotInfo", "redact_dsn"]

log = logging.getLogger(__name__)

# WAL position: on a standby pg_current_wal_lsn() fails, the replayed position stands in for it
SLOTS_SQL = """
SELECT slot_name::text, plugin::text, database::text, active,
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END,
                       restart_lsn)::bigint,
       slot_type, wal_status
FROM pg_replication_slots ORDER BY slot_name
"""

_SECRET_PARAMS = ("password", "sslpassword")
_QUOTED = re.compile(r'"[^"]*"')


def _copy_blocks(conn: psycopg.Connection[Any], sql: str, block_bytes: int) -> Iterator[bytes]:
    """The output of ``COPY ... TO STDOUT`` in blocks of whole lines, read from libpq directly: the
    protocol sends one message per row, and psycopg's ``Copy`` iterator costs twice as much CPU per row
    (a third of the bridge's work in a copy). Waits for data in ``select``, with the GIL released."""
    pg = conn.pgconn
    pg.send_query(sql.encode())
    while pg.is_busy():
        select.select([pg.socket], [], [])
        pg.consume_input()
    result = pg.get_result()
    if result is None or result.status != psycopg.pq.ExecStatus.COPY_OUT:
        raise SourceError(f"PostgreSQL refused a copy: {_pq_error(pg, result)}")
    pending = bytearray()
    while True:
        size, data = pg.get_copy_data(1)
        if size > 0:
            pending += data
            if len(pending) >= block_bytes:
                yield bytes(pending)
                pending.clear()
        elif size == 0:  # nothing buffered: wait for the socket
            select.select([pg.socket], [], [])
            pg.consume_input()
        else:  # -1: the copy ended (its outcome is the next result); -2: the connection failed
            break
    outcome = pg.get_result()
    while pg.get_result() is not None:
        pass
    if outcome is None or outcome.status != psycopg.pq.ExecStatus.COMMAND_OK:
        raise SourceError(f"PostgreSQL failed during a copy: {_pq_error(pg, outcome)}")
    if pending:
        yield bytes(pending)


def _pq_error(pg: Any, result: Any) -> str:
    text = (result.error_message if result is not None else b"") or pg.error_message or b"no result"
    return bytes(text).decode("utf-8", "replace").strip()


def redact_dsn(dsn: str) -> str:
    """The DSN as libpq reads it (URL or key=value, quoting and escapes included) with the password
    replaced by ``***``: no part of a password is ever in the result. A DSN libpq cannot parse is
    not shown at all."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "(a DSN that libpq cannot parse)"
    secret = any(params.pop(name, None) for name in _SECRET_PARAMS)
    if not dsn.lstrip().lower().startswith(("postgresql://", "postgres://")):
        return psycopg.conninfo.make_conninfo("", **params, **({"password": "***"} if secret else {}))
    user, host, port, dbname = (str(params.pop(k, "") or "") for k in ("user", "host", "port", "dbname"))
    auth = (quote(user, safe="") + (":***" if secret else "") + "@") if user or secret else ""
    where = quote(host, safe=",") + (f":{port}" if port and "," not in host else "")
    query = ("?" + urlencode(params)) if params else ""
    return f"postgresql://{auth}{where}/{quote(dbname, safe='')}{query}"


def _driver_message(error: psycopg.Error) -> str:
    """The first line of a driver error, with anything libpq quoted from the DSN left out."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return _QUOTED.sub('"…"', first) if isinstance(error, psycopg.ProgrammingError) else first


@dataclass(frozen=True)
class Excluded:
    """A table the bridge will not capture, and why."""

    table: str
    reason: str


class PostgresSource:
    """Catalog and readiness checks for one source database. Connections are short-lived.

    ``read_only=True`` opens every session with ``default_transaction_read_only=on``: the server
    itself refuses any DDL or DML (`cdc preflight` relies on it). It does not stop replication-slot
    functions such as ``pg_create_logical_replication_slot``: callers must not issue them.
    """

    def __init__(self, dsn: str, read_only: bool = False) -> None:
        self.dsn = dsn
        self.read_only = read_only

    @property
    def where(self) -> str:
        """The DSN without its password, safe to print."""
        return redact_dsn(self.dsn)

    def _connect(self, autocommit: bool = True) -> psycopg.Connection[Any]:
        try:
            extra: dict[str, Any] = {"options": self._read_only_options()} if self.read_only else {}
            return psycopg.connect(self.dsn, autocommit=autocommit, connect_timeout=10, **extra)
        except psycopg.Error as e:
            raise SourceError(f"cannot connect to PostgreSQL at {redact_dsn(self.dsn)}: {_driver_message(e)}") from e

    def _read_only_options(self) -> str:
        """The DSN's own ``options`` (or PGOPTIONS) plus read-only: a keyword argument replaces them."""
        own = psycopg.conninfo.conninfo_to_dict(self.dsn).get("options") or os.environ.get("PGOPTIONS", "")
        return f"{own} -c default_transaction_read_only=on".strip()

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._connect() as conn:
            try:
                return conn.execute(sql, params).fetchall()
            except psycopg.Error as e:
                raise SourceError(f"PostgreSQL refused a query: {str(e).strip()}") from e

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        with self._connect() as conn:
            try:
                conn.execute(sql, params)
            except psycopg.Error as e:
                raise SourceError(f"PostgreSQL refused a statement: {str(e).strip()}") from e

    def connection_params(self) -> dict[str, Any]:
        """host/port/user/password/dbname as libpq resolves them (for Debezium)."""
        with self._connect() as conn:
            info = conn.info
            return {
                "host": info.host if not info.host.startswith("/") else "127.0.0.1",
                "port": info.port,
                "user": info.user,
                "password": info.password or "",
                "dbname": info.dbname,
            }

    def check_logical_replication(self) -> None:
        (level,) = self.query("SHOW wal_level")[0]
        if level != "logical":
            raise SourceError(
                f"wal_level is '{level}' on {redact_dsn(self.dsn)}; logical replication needs "
                "wal_level=logical: set it in postgresql.conf (ALTER SYSTEM SET wal_level = logical) and restart"
            )

    def current_wal_lsn(self) -> int:
        (lsn,) = self.query("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")[0]
        return int(lsn)

    def copy_out(self, query: str, block_bytes: int = 16 << 20, snapshot: str | None = None) -> Iterator[bytes]:
        """``COPY (query) TO STDOUT``: blocks of about ``block_bytes``, each ending at a line's end; with
        ``snapshot`` (an exported one, :meth:`create_slot_exporting`), the database as that snapshot saw it."""
        with self._connect(autocommit=snapshot is None) as conn:
            try:  # values as the copy path expects them whatever the database's defaults: all floats' digits
                if snapshot is not None:
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot.replace(chr(39), '')}'")
                conn.execute("SET DateStyle = ISO; SET TimeZone = 'UTC'; SET extra_float_digits = 1")
                yield from _copy_blocks(conn, f"COPY ({query}) TO STDOUT", block_bytes)
            except psycopg.Error as e:
                raise SourceError(f"PostgreSQL refused a copy: {str(e).strip()}") from e
            finally:
                conn.close()  # a copy left unfinished (its reader stopped) ends with the connection

    def create_slot_exporting(self, slot: str) -> ExportedSnapshot:
        """Create logical replication slot ``slot`` (pgoutput) and export the snapshot it starts from: a
        copy read under it holds exactly the changes committed before the slot's first streamed one."""
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, replication="database", connect_timeout=10)
        except psycopg.Error as e:
            raise SourceError(f"cannot open a replication connection: {_driver_message(e)}") from e
        name = '"' + slot.replace('"', '""') + '"'
        try:
            row = conn.execute(f"CREATE_REPLICATION_SLOT {name} LOGICAL pgoutput EXPORT_SNAPSHOT").fetchone()
        except psycopg.Error as e:
            conn.close()
            raise SourceError(f"cannot create replication slot {slot}: {_driver_message(e)}") from e
        assert row is not None
        return ExportedSnapshot(conn, str(row[2]))

    def ensure_publication(self, publication: str, tables: Sequence[tuple[str, str]]) -> None:
        """The bridge makes its publication itself rather than Debezium, whose statement does not quote a
        name holding a double quote, and which leaves an existing publication's options alone: this one
        sends a partitioned table's changes as its root's (``publish_via_partition_root``), partitions
        created or attached later included. A publication FOR ALL TABLES is refused, as before (it would
        decode every table's changes), and one that lists exactly the captured tables needs no ownership."""
        name = '"' + publication.replace('"', '""') + '"'
        listed = ", ".join(sql_table(schema, table) for schema, table in tables)
        try:
            rows = self.query("SELECT puballtables, pubviaroot FROM pg_publication WHERE pubname = %s", (publication,))
            if not rows:
                self.execute(f"CREATE PUBLICATION {name} FOR TABLE {listed} WITH (publish_via_partition_root = true)")
                return
            if rows[0][0]:
                raise SourceError(
                    f"publication {publication} exists FOR ALL TABLES and the bridge does not change it; fix: DROP"
                    f" PUBLICATION {name}; (the bridge then creates it for the captured tables), or use another"
                    " --source-name"
                )
            have = self.query(
                "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (publication,)
            )
            if not rows[0][1]:
                self.execute(f"ALTER PUBLICATION {name} SET (publish_via_partition_root = true)")
            if {(str(s), str(t)) for s, t in have} != set(tables):  # the same tables: nothing to own or change
                self.execute(f"ALTER PUBLICATION {name} SET TABLE {listed}")
        except SourceError as e:
            if "FOR ALL TABLES" in str(e):
                raise
            raise SourceError(
                f"cannot create or update publication {publication}: {e}. The role needs CREATE on the database "
                "and to own the captured tables; `cdc preflight` shows the grants"
            ) from e

    def slot_flushed_lsn(self, slot: str) -> int | None:
        rows = self.query(
            "SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::bigint FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def slots(self) -> list[SlotInfo]:
        """Every replication slot of the cluster (all databases), by name.

        ``retained_wal_bytes`` is how much WAL the server keeps for the slot: the distance from its
        ``restart_lsn`` to the current WAL position (None while it holds no position). An inactive
        slot keeps WAL until something reads it or it is dropped. Needs no special privilege.
        """
        return [slot_info(r) for r in self.query(SLOTS_SQL)]

    def tables(self) -> list[TableSchema]:
        """Every ordinary table outside the system schemas."""
        return schemas_from_rows(self.query(CATALOG_SQL.format(only="")))

    def select_tables(self, include: Sequence[str] | None, source: str) -> tuple[list[TableSchema], list[Excluded]]:
        """The tables to capture, and those left out (with the reason and the fix). ``include`` are
        names as users write them (:func:`cdc.domain.names.parse_table`)."""
        found = {(s.ref.schema, s.ref.table): s for s in self.tables()}
        try:
            wanted = [parse_table(t) for t in include] if include else sorted(found)
        except ValueError as e:
            raise SourceError(str(e)) from e
        missing = [display_table(*t) for t in wanted if t not in found]
        if missing:
            raise SourceError(f"table(s) not found in {redact_dsn(self.dsn)}: {', '.join(missing)}")
        chosen: list[TableSchema] = []
        excluded: list[Excluded] = []
        for name in dict.fromkeys(wanted):
            schema = found[name]
            if not schema.key:
                excluded.append(Excluded(schema.ref.qualified, NO_IDENTITY.format(t=schema.ref.display)))
            else:
                chosen.append(with_source(schema, source))
        return chosen, excluded

    def table_schema(self, ref: TableRef) -> TableSchema | None:
        """One table's definition (the mirror re-reads it every few seconds: only that table is queried)."""
        rows = self.query(CATALOG_SQL.format(only="AND n.nspname = %s AND c.relname = %s"), (ref.schema, ref.table))
        schemas = schemas_from_rows(rows)
        return with_source(schemas[0], ref.source) if schemas else None


def slot_info(row: Sequence[Any]) -> SlotInfo:
    name, plugin, database, active, retained, slot_type, wal_status = row
    return SlotInfo(
        name, plugin, database, bool(active), None if retained is None else int(retained), slot_type, wal_status
    )


class PostgresSession:
    """A long-lived connection for scripts (demo schema, load generator). Use as a context manager."""

    def __init__(self, source: PostgresSource) -> None:
        self._conn = source._connect(autocommit=True)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            cur = self._conn.execute(sql, params)
            return cur.fetchall() if cur.description else []
        except psycopg.Error as e:
            raise SourceError(f"PostgreSQL refused a statement: {str(e).strip()}") from e

    def transaction(self) -> Any:
        """``with session.transaction(): ...`` commits on success, rolls back on error."""
        return self._conn.transaction()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> PostgresSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ExportedSnapshot:
    """A snapshot exported by the replication connection that created a slot: importable while it is open."""

    def __init__(self, conn: psycopg.Connection[Any], name: str) -> None:
        self._conn, self.name = conn, name

    def close(self) -> None:
        self._conn.close()

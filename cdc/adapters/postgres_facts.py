"""What `cdc preflight` reads from a source database, in one session, as plain facts.

Catalog and settings queries only (SELECT, SHOW-like functions): they run inside the read-only
session the caller's :class:`PostgresSource` opens and need no privilege beyond connecting.
Queries go through :class:`PostgresSession`, so psycopg stays in :mod:`cdc.adapters.postgres`.
"""

from __future__ import annotations

from typing import Any

from cdc.adapters.postgres import SLOTS_SQL, PostgresSession, PostgresSource, slot_info
from cdc.domain.values import standin_lost
from cdc.preflight.facts import PublicationFacts, RoleFacts, SourceFacts, TableFacts

_SERVER_SQL = """
SELECT current_database()::text, current_setting('server_version_num')::int, pg_is_in_recovery(),
       current_setting('wal_level'), current_setting('max_replication_slots')::int,
       current_setting('max_wal_senders')::int, (SELECT count(*) FROM pg_stat_replication)::int
"""

# REPLICATION is an attribute of the login role itself (membership does not pass it on);
# Amazon RDS grants the equivalent through membership in rds_replication.
_ROLE_SQL = """
SELECT r.rolname::text, r.rolsuper, r.rolreplication,
       (SELECT pg_has_role(r.oid, g.oid, 'MEMBER') FROM pg_roles g WHERE g.rolname = 'rds_replication'),
       has_database_privilege(current_database(), 'CREATE')
FROM pg_roles r WHERE r.rolname = current_user
"""

# Ownership checks (ALTER/CREATE PUBLICATION) accept inherited roles: pg_has_role(..., 'USAGE').
# TOAST-able: variable length (attlen -1) stored EXTENDED or EXTERNAL, the storages that move large
# values out of line. MAIN (numeric, inet, ...) goes out of line only as a last resort: left out as noise.
_TABLES_SQL = """
SELECT n.nspname::text, c.relname::text, c.relkind::text, c.relreplident::text,
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p'),
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident),
       has_table_privilege(c.oid, 'SELECT'),
       pg_has_role(c.relowner, 'USAGE'),
       ARRAY(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attlen = -1 AND a.attstorage IN ('x', 'e') ORDER BY a.attnum),
       ARRAY(SELECT COALESCE(et.typname, bt.typname)::text || CASE WHEN et.oid IS NULL THEN '' ELSE '[]' END
             FROM pg_attribute a
             JOIN pg_type t ON t.oid = a.atttypid
             JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
             LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attlen = -1 AND a.attstorage IN ('x', 'e') ORDER BY a.attnum),
       ARRAY(SELECT a.attname::text FROM pg_attribute a
             JOIN pg_type t ON t.oid = a.atttypid
             JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
             LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               AND COALESCE(et.oid, bt.oid) = 'numeric'::regtype
               AND CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END < 0
             ORDER BY a.attnum)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2
"""

_PUBLICATIONS_SQL = """
SELECT p.pubname::text, p.puballtables, p.pubviaroot, pg_has_role(p.pubowner, 'USAGE'),
       CASE WHEN p.puballtables THEN ARRAY[]::text[] ELSE
            ARRAY(SELECT t.schemaname || '.' || t.tablename FROM pg_publication_tables t
                  WHERE t.pubname = p.pubname ORDER BY 1) END
FROM pg_publication p ORDER BY 1
"""


def read_preflight_facts(source: PostgresSource) -> SourceFacts:
    """Read everything preflight judges, in one session of ``source`` (open it read-only)."""
    with PostgresSession(source) as session:
        database, version, in_recovery, wal_level, max_slots, max_senders, senders = session.execute(_SERVER_SQL)[0]
        return SourceFacts(
            database=database,
            server_version=int(version),
            in_recovery=bool(in_recovery),
            wal_level=wal_level,
            max_replication_slots=int(max_slots),
            max_wal_senders=int(max_senders),
            wal_senders_in_use=int(senders),
            role=_role(session.execute(_ROLE_SQL)[0]),
            tables=tuple(_table(r) for r in session.execute(_TABLES_SQL)),
            publications=tuple(_publication(r) for r in session.execute(_PUBLICATIONS_SQL)),
            slots=tuple(slot_info(r) for r in session.execute(SLOTS_SQL)),
        )


def _role(r: tuple[Any, ...]) -> RoleFacts:
    name, superuser, replication, rds, create = r
    return RoleFacts(name, bool(superuser), bool(replication), None if rds is None else bool(rds), bool(create))


def _table(r: tuple[Any, ...]) -> TableFacts:
    schema, name, kind, ident, pk, ri_index, select, owned, toastable, types, numeric = r
    lost = tuple(
        c for c, t in zip(toastable, types, strict=True) if standin_lost(t.removesuffix("[]"), t.endswith("[]"))
    )
    return TableFacts(
        schema,
        name,
        kind,
        ident,
        bool(pk),
        bool(ri_index),
        bool(select),
        bool(owned),
        tuple(toastable),
        tuple(numeric),
        toast_lost=lost,
    )


def _publication(r: tuple[Any, ...]) -> PublicationFacts:
    name, all_tables, via_root, owned, tables = r
    return PublicationFacts(name, bool(all_tables), bool(via_root), bool(owned), tuple(tables))

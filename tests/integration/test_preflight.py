"""`cdc preflight` against real PostgreSQL 15 clusters: verdicts, exit codes, JSON, and that it changes nothing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cdc import bootstrap
from cdc.adapters.postgres import PostgresSource
from cdc.cli import main
from cdc.embedded.net import free_port
from cdc.embedded.pg_cluster import EmbeddedPostgres
from cdc.errors import SourceError
from cdc.preflight import Severity

SECRET = "s3cr3t-Pw-9xq"
CDC = Path(sys.executable).parent / "cdc"
CDC_ARGV = [str(CDC)] if CDC.exists() else [sys.executable, "-m", "cdc.cli"]


def _cluster(settings: dict[str, str] | None = None) -> Iterator[EmbeddedPostgres]:
    root = Path(tempfile.mkdtemp(prefix="cdc-preflight-"))
    root.chmod(0o755)  # the postgres OS user must reach the data dir (we may be root)
    pg = EmbeddedPostgres(root / "data", free_port(), root / "postgres.log", settings=settings)
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedPostgres]:
    yield from _cluster()


@pytest.fixture(scope="module")
def replica_cluster() -> Iterator[EmbeddedPostgres]:
    yield from _cluster({"wal_level": "replica"})


def _fresh_db(pg: EmbeddedPostgres, request: pytest.FixtureRequest, ddl: str) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    pg.run_sql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg.create_database(name)
    pg.run_sql(name, ddl)
    return pg.dsn(name)


ORDERS = "CREATE TABLE orders (id bigint PRIMARY KEY, qty int NOT NULL, amount numeric(12, 2));"
NOTES = "CREATE TABLE notes (body text, written_at timestamptz);"


@pytest.fixture
def ready_db(cluster: EmbeddedPostgres, request: pytest.FixtureRequest) -> str:
    return _fresh_db(cluster, request, ORDERS)


@pytest.fixture
def keyless_db(cluster: EmbeddedPostgres, request: pytest.FixtureRequest) -> str:
    return _fresh_db(cluster, request, ORDERS + NOTES)


def cli(*args: str) -> tuple[int, str, str]:
    """The real `cdc` executable in a child process."""
    done = subprocess.run([*CDC_ARGV, *args], capture_output=True, text=True, timeout=120, check=False)
    return done.returncode, done.stdout, done.stderr


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["preflight", *args])
    out, err = capsys.readouterr()
    return code, out, err


def sql(dsn: str, statement: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else []


def with_user(dsn: str, user: str, password: str | None = None) -> str:
    cred = f"{user}:{password}" if password else user
    return dsn.replace("postgresql://postgres@", f"postgresql://{cred}@")


# (a) ------------------------------------------------------------------------------------------
def test_wal_level_replica_blocks(replica_cluster: EmbeddedPostgres, request: pytest.FixtureRequest) -> None:
    dsn = _fresh_db(replica_cluster, request, ORDERS)
    code, out, err = cli("preflight", dsn)
    assert code == 1, out + err
    assert re.search(r"^BLOCKING\s+wal_level\s+wal_level is 'replica'", out, re.MULTILINE), out
    assert "fix: ALTER SYSTEM SET wal_level = logical" in out
    assert "not ready" in out


# (b) ------------------------------------------------------------------------------------------
def test_table_without_key_warns_and_exits_2(keyless_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, keyless_db)
    assert code == 2, out
    assert re.search(r"^warning\s+replica_identity\s+public\.notes has no primary key", out, re.MULTILINE), out
    assert "ALTER TABLE public.notes REPLICA IDENTITY FULL" in out
    assert "1 table(s) to capture: public.orders" in out
    report = bootstrap.preflight(keyless_db)
    assert report.tables == ("public.orders",)
    assert [f.subject for f in report.warnings] == ["public.notes"]
    assert not report.blocking


# (c) ------------------------------------------------------------------------------------------
def test_role_without_replication_or_select_blocks(ready_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    sql(ready_db, "DROP ROLE IF EXISTS plain_reader; CREATE ROLE plain_reader LOGIN")
    code, out, _ = run(capsys, with_user(ready_db, "plain_reader"))
    assert code == 1, out
    report = bootstrap.preflight(with_user(ready_db, "plain_reader"))
    blocking = {(f.check, f.subject) for f in report.blocking}
    assert ("replication_role", None) in blocking
    assert ("select", "public.orders") in blocking
    fixes = " ".join(f.fix or "" for f in report.blocking)
    assert "ALTER ROLE plain_reader WITH REPLICATION" in fixes
    assert "GRANT SELECT ON public.orders TO plain_reader" in fixes
    # the publication: no CREATE on the database, and the table belongs to postgres
    assert "GRANT CREATE ON DATABASE" in fixes
    assert re.search(r"CREATE PUBLICATION cdc_\w+ FOR TABLE public\.orders;", fixes)


# (d) ------------------------------------------------------------------------------------------
def test_ready_database_exits_0(ready_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, ready_db)
    assert code == 0, out
    assert "0 blocking, 0 warning(s)" in out and "ready (exit 0)" in out
    assert re.search(r"^ok\s+wal_level\s+wal_level is logical", out, re.MULTILINE)


def test_least_privilege_role_is_ready(ready_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """REPLICATION + SELECT + CREATE on the database + owning the tables: all a non-superuser needs."""
    db = ready_db.rsplit("/", 1)[1]
    sql(
        ready_db,
        f"DROP ROLE IF EXISTS cdc_user; CREATE ROLE cdc_user LOGIN REPLICATION; "
        f"GRANT CREATE ON DATABASE {db} TO cdc_user; ALTER TABLE orders OWNER TO cdc_user",
    )
    code, out, _ = run(capsys, with_user(ready_db, "cdc_user"))
    assert code == 0, out
    assert "role cdc_user has the REPLICATION attribute" in out


# (e) ------------------------------------------------------------------------------------------
def test_json_output(keyless_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, keyless_db, "--json", "--source-name", "app")
    assert code == 2
    doc = json.loads(out)
    assert doc["source"] == "app" and doc["slot"] == "cdc_app" and doc["publication"] == "cdc_app"
    assert doc["tables"] == ["public.orders"]
    assert doc["summary"] == {
        "blocking": 0,
        "warning": 1,
        "info": doc["summary"]["info"],
        "ready": True,
        "exit_code": 2,
    }
    warning = next(f for f in doc["findings"] if f["severity"] == "warning")
    assert warning["check"] == "replica_identity" and warning["subject"] == "public.notes"
    assert "REPLICA IDENTITY FULL" in warning["fix"]
    assert {f["check"] for f in doc["findings"]} >= {
        "wal_level",
        "replication_slots",
        "wal_senders",
        "replication_role",
        "select",
        "publication",
        "slot",
    }


# (f) ------------------------------------------------------------------------------------------
_STATE = [
    "SELECT slot_name, plugin, database FROM pg_replication_slots ORDER BY 1",
    "SELECT pubname, puballtables, pubviaroot FROM pg_publication ORDER BY 1",
    "SELECT * FROM pg_publication_tables ORDER BY 1, 2, 3",
    "SELECT c.oid::regclass::text, c.relkind, c.relreplident, c.relowner FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1",
    "SELECT rolname, rolreplication FROM pg_roles ORDER BY 1",
]


_NEXT_XID = "SELECT pg_snapshot_xmax(pg_current_snapshot())"  # moves only when a transaction takes an xid


def test_preflight_changes_nothing(keyless_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = [sql(keyless_db, q) for q in _STATE]
    next_xid = sql(keyless_db, _NEXT_XID)
    assert run(capsys, keyless_db)[0] == 2
    assert run(capsys, keyless_db, "--json", "--tables", "public.orders,public.notes")[0] == 2
    assert sql(keyless_db, _NEXT_XID) == next_xid  # no write transaction anywhere in the cluster
    assert [sql(keyless_db, q) for q in _STATE] == before


def test_preflight_session_is_read_only(keyless_db: str) -> None:
    """The server itself refuses writes in preflight's sessions, whatever a query tried to do."""
    source = PostgresSource(keyless_db, read_only=True)
    assert source.query("SHOW transaction_read_only") == [("on",)]
    with pytest.raises(SourceError, match="read-only transaction"):
        source.execute("CREATE TABLE sneaky (id int)")
    with pytest.raises(SourceError, match="read-only transaction"):
        source.execute("INSERT INTO orders VALUES (1, 1, 1)")
    with pytest.raises(SourceError, match="read-only transaction"):
        source.execute("ALTER TABLE notes REPLICA IDENTITY FULL")
    # NB: read-only does not stop slot functions (pg_create_logical_replication_slot works in a read-only
    # transaction); preflight calls none, and test_preflight_changes_nothing compares the slots.
    # the DSN's own options survive next to read-only
    with_options = keyless_db + "?options=-c%20search_path%3Dpg_catalog"
    both = PostgresSource(with_options, read_only=True).query(
        "SELECT current_setting('search_path'), current_setting('transaction_read_only')"
    )
    assert both == [("pg_catalog", "on")]
    assert PostgresSource(keyless_db).query("SHOW transaction_read_only") == [("off",)]


# (g) ------------------------------------------------------------------------------------------
def test_password_is_never_printed(keyless_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    dsn = with_user(keyless_db, "postgres", SECRET)  # trust auth: the password is accepted and ignored
    for args in ([dsn], [dsn, "--json"]):
        code, out, err = run(capsys, *args)
        assert code == 2
        assert SECRET not in out + err and "postgres:***@" in out
    unreachable = f"postgresql://postgres:{SECRET}@127.0.0.1:{free_port()}/app"
    code, out, err = cli("preflight", unreachable)
    assert code == 1 and out == ""
    assert err.startswith("error: cannot connect to PostgreSQL at postgresql://postgres:***@") and err.count("\n") == 1
    assert SECRET not in err
    code, _, err = cli("preflight", f"host=127.0.0.1 port={free_port()} user=x password={SECRET} dbname=app")
    assert code == 1 and SECRET not in err


# slots, publications, partitions ---------------------------------------------------------------
def test_slots_are_listed_and_idle_ones_warn(keyless_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    own = "cdc_" + keyless_db.rsplit("/", 1)[1]
    sql(keyless_db, f"SELECT pg_create_logical_replication_slot('{own}', 'pgoutput')")
    sql(keyless_db, "SELECT pg_create_logical_replication_slot('forgotten', 'test_decoding')")
    try:
        sql(keyless_db, "INSERT INTO orders SELECT g, 1, 2.5 FROM generate_series(1, 2000) g")
        slots = {s.slot_name: s for s in PostgresSource(keyless_db).slots()}
        forgotten = slots["forgotten"]
        assert (forgotten.plugin, forgotten.slot_type, forgotten.active) == ("test_decoding", "logical", False)
        assert forgotten.database == keyless_db.rsplit("/", 1)[1]
        assert forgotten.retained_wal_bytes is not None and forgotten.retained_wal_bytes > 0
        report = bootstrap.preflight(keyless_db, ["public.orders"])
        by_check = {f.check: f for f in report.findings}
        assert by_check["slot"].severity is Severity.INFO and "resumes from it" in by_check["slot"].message
        assert by_check["idle_slot"].severity is Severity.WARNING and by_check["idle_slot"].subject == "forgotten"
        assert "pg_drop_replication_slot('forgotten')" in (by_check["idle_slot"].fix or "")
        assert report.exit_code == 2
        code, out, _ = run(capsys, keyless_db, "--tables", "orders")
        assert re.search(r"^  forgotten\s+test_decoding in \S+\s+inactive\s+retains \d", out, re.MULTILINE), out
    finally:
        sql(keyless_db, f"SELECT pg_drop_replication_slot(s) FROM unnest(ARRAY['{own}', 'forgotten']) s")


def test_publications_and_partitions(cluster: EmbeddedPostgres, request: pytest.FixtureRequest) -> None:
    ddl = ORDERS + (
        "CREATE TABLE events (id bigint, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);"
        "CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"
        "CREATE TABLE docs (id int PRIMARY KEY, doc jsonb, price numeric);"
        "CREATE PUBLICATION cdc_pub FOR TABLE orders, docs;"
        "CREATE PUBLICATION cdc_all FOR ALL TABLES;"
    )
    dsn = _fresh_db(cluster, request, ddl)
    report = bootstrap.preflight(dsn, None, "pub")
    assert report.tables == ("public.docs", "public.events", "public.orders")  # the partitioned root, not its partition
    by_check = {f.check: f for f in report.findings}
    assert by_check["partitioned"].severity is Severity.INFO
    assert "publish_via_partition_root = true" in by_check["partitioned"].message
    assert by_check["publication"].severity is Severity.INFO and "updates" in by_check["publication"].message
    assert "doc" in by_check["toast"].message and by_check["toast"].subject == "public.docs"
    assert "price" in by_check["numeric"].message
    assert not bootstrap.preflight(dsn, ["public.events", "orders"], "pub").blocking  # captured through its root
    everything = bootstrap.preflight(dsn, None, "all")
    assert [f.check for f in everything.blocking] == ["publication"]
    assert "FOR ALL TABLES" in everything.blocking[0].message
